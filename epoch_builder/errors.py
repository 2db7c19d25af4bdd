"""The error types the CLI turns into a clean one-line message and an exit status.

Exit statuses, the same in all three programs: 0 done; 1 the command failed (a missing or damaged
file, a refused action); 2 bad usage (an unknown option, a parameter out of its range, a file named
on the command line that does not exist); 3 verification failed (the file was read and breaks a
rule). 130 interrupted.
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_VERIFICATION = 0, 1, 2, 3
EXIT_STATUS_HELP = ("exit status: 0 done, 1 failed (missing or damaged file, refused action), "
                    "2 bad usage (option, parameter range, file not found), 3 verification failed")


class EpochBuilderError(Exception):
    """A user-facing failure: bad input, refused action, missing artifact.

    The message is one line and names the file, row, key or parameter and,
    where it applies, the allowed values.
    """

    exit_code = EXIT_FAILED  # the CLI's exit status for it


class UsageError(EpochBuilderError):
    """The command line itself is wrong: a parameter out of range, a bad combination, a named file
    that does not exist. Same status as argparse's own errors."""

    exit_code = EXIT_USAGE


class VerificationFailed(EpochBuilderError):
    """A file was read fine but fails a rule it must satisfy (verify-epoch): exit status 3, so scripts
    tell a bad Epoch File from a bad command line or a missing file."""

    exit_code = EXIT_VERIFICATION
