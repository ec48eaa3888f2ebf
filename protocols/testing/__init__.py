"""placeholder"""
from protocols.testing.compare import assert_messages_equal, messages_equal, role_state
