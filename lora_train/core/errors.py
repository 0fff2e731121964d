"""The one exception type for problems the user can fix.

Every message names the file or key at fault and says what to do. Front ends print the
message alone (no traceback); the worker sends it as an `error` event.
"""


class UserError(Exception):
    """A bad input, setting or environment, described in words a user can act on."""
