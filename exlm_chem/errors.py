"""The exception types a user sees: bad input, and a run that produced nothing.

Library functions raise `InputError` with a message that names the file, row or argument at
fault; the command line prints that message on one line and exits with status 2. A run that
could not produce a result from good input (every learning rate diverged) raises
`TrainingFailed`: one line, exit status 1.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a row in it, or an argument."""


class TrainingFailed(RuntimeError):
    """A training run that ended without a usable model (its loss was never finite)."""
