"""The one exception type for bad user input.

Library functions raise `InputError` with a message that names the file, row or argument at
fault; the command line prints that message on one line and exits non-zero.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a row in it, or an argument."""
