"""rman.py: error stacks, one-line causes and progress from real-shaped RMAN transcripts."""

from __future__ import annotations

import pytest

from fanout.rman import MAX_CAUSE, MAX_STACK_LINES, Transcript, step_cause

BANNER = """\
RMAN-00571: ===========================================================
RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============
RMAN-00571: ===========================================================
"""

SUCCESS_19C = """\

Recovery Manager: Release 19.0.0.0.0 - Production on Wed Aug 20 01:33:24 2025
Version 19.3.0.0.0

Copyright (c) 1982, 2019, Oracle and/or its affiliates.  All rights reserved.

connected to target database: ORCLCDB (DBID=2979897351)

RMAN> 2> 3> 4>
Starting backup at 2025-08-20 01:33:26
using target database control file instead of recovery catalog
allocated channel: ORA_DISK_1
channel ORA_DISK_1: SID=622 device type=DISK
channel ORA_DISK_1: starting compressed incremental level 0 datafile backup set
channel ORA_DISK_1: specifying datafile(s) in backup set
input datafile file number=00001 name=/opt/oracle/oradata/ORCLCDB/system01.dbf
input datafile file number=00004 name=/opt/oracle/oradata/ORCLCDB/users01.dbf
channel ORA_DISK_1: starting piece 1 at 2025-08-20 01:33:27
channel ORA_DISK_1: finished piece 1 at 2025-08-20 01:33:42
piece handle=/opt/oracle/fra/ORCLCDB/backupset/0241i7hj_1_1 tag=FANOUT_L0 comment=NONE
channel ORA_DISK_1: backup set complete, elapsed time: 00:00:15
Finished backup at 2025-08-20 01:33:42

Starting Control File and SPFILE Autobackup at 2025-08-20 01:33:42
piece handle=/opt/oracle/fra/ORCLCDB/autobackup/c-2979897351-20250820-00 comment=NONE
Finished Control File and SPFILE Autobackup at 2025-08-20 01:33:43

RMAN>

Recovery Manager complete.
"""

RECOVERY_AREA_FULL = f"""\
Starting backup at 2019-08-20 13:19:30
using channel ORA_DISK_1
channel ORA_DISK_1: starting full datafile backup set
channel ORA_DISK_1: specifying datafile(s) in backup set
input datafile file number=00001 name=/u01/oradata/ORCL/system01.dbf
channel ORA_DISK_1: starting piece 1 at 2019-08-20 13:19:31
RMAN-03009: failure of backup command on ORA_DISK_1 channel at 08/20/2019 13:19:40
ORA-19809: limit exceeded for recovery files
ORA-19804: cannot reclaim 67108864 bytes disk space from 4781506560 limit
continuing other job steps, job failed will not be re-run
channel ORA_DISK_1: starting full datafile backup set
channel ORA_DISK_1: specifying datafile(s) in backup set
input datafile file number=00003 name=/u01/oradata/ORCL/sysaux01.dbf
channel ORA_DISK_1: starting piece 1 at 2019-08-20 13:19:41

{BANNER}\
RMAN-03009: failure of backup command on ORA_DISK_1 channel at 08/20/2019 13:19:42
ORA-19809: limit exceeded for recovery files
ORA-19804: cannot reclaim 67108864 bytes disk space from 4781506560 limit

RMAN>

Recovery Manager complete.
"""

NOARCHIVELOG = f"""\
Starting backup at 2012-01-28 17:40:34
using target database control file instead of recovery catalog
allocated channel: ORA_DISK_1
channel ORA_DISK_1: SID=20 device type=DISK
{BANNER}\
RMAN-03002: failure of backup command at 01/28/2012 17:40:35
RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode

Recovery Manager complete.
"""

GRAMMAR = '"archivelog, as, auxiliary, backupset, backup, channel, check, controlfilecopy, copies'
SYNTAX_ERROR = f"""\
connected to target database: PROD (DBID=1234567890)

RMAN> 2> 3> 4> RMAN-00571: ===========================================================
RMAN-00569: =============== ERROR MESSAGE STACK FOLLOWS ===============
RMAN-00571: ===========================================================
RMAN-00558: error encountered while parsing input commands
RMAN-01009: syntax error: found "identifier": expecting one of: {GRAMMAR}, copy, cumulative"
RMAN-01008: the bad identifier was: DATABSE
RMAN-01007: at line 3 column 30 file: standard input

RMAN>

Recovery Manager complete.
"""

CREATE_FILE_FAILED = f"""\
channel ORA_DISK_1: starting piece 1 at 2024-03-02 01:00:05
{BANNER}\
RMAN-03009: failure of backup command on ORA_DISK_1 channel at 03/02/2024 01:00:05
ORA-19504: failed to create file "/backup/PROD/PROD_L0_0n2k3l4m_1_1.bkp"
ORA-27040: file create error, unable to create file
Linux-x86_64 Error: 2: No such file or directory
Additional information: 1

Recovery Manager complete.
"""

ARCHIVED_LOG_MISSING = f"""\
Starting backup at 2026-11-23 17:20:00
current log archived
using channel ORA_DISK_1
{BANNER}\
RMAN-03002: failure of backup command at 11/23/2026 17:20:01
RMAN-06059: expected archived log not found, loss of archived log compromises recoverability
ORA-19625: error identifying file /u01/fra/PROD/archivelog/o1_mf_1_812_mn2b3c4d_.arc
ORA-27037: unable to obtain file status
Linux-x86_64 Error: 2: No such file or directory
Additional information: 7

Recovery Manager complete.
"""

WARNINGS_ONLY = """\
Starting backup at 2026-11-23 02:00:00
current log archived
using channel ORA_DISK_1
RMAN-08512: waiting for snapshot control file enqueue
specification does not match any archived log in the repository
backup cancelled because there are no files to backup
Finished backup at 2026-11-23 02:00:41
RMAN-08137: WARNING: archived log not deleted, needed for standby or upstream capture process
archived log file name=/u01/arch/1_10_1209605035.dbf thread=1 sequence=10
RMAN-08120: WARNING: archived log not deleted, not yet applied by standby
RMAN-08138: WARNING: archived log not deleted, must create more backups

Recovery Manager complete.
"""

SNAPSHOT_ENQUEUE = f"""\
Starting backup at 2026-11-23 02:00:00
using channel ORA_DISK_1
RMAN-08512: waiting for snapshot control file enqueue
RMAN-08512: waiting for snapshot control file enqueue
cannot make a snapshot control file
{BANNER}\
RMAN-03002: failure of backup command at 11/23/2026 02:05:00
RMAN-03009: failure of backup command on ORA_DISK_1 channel at 11/23/2026 02:05:00
ORA-00230: operation disallowed: snapshot control file enqueue unavailable
"""

MULTI_CHANNEL = f"""\
Starting backup at 2026-11-23 01:00:00
allocated channel: ORA_DISK_1
allocated channel: ORA_DISK_2
channel ORA_DISK_1: starting incremental level 0 datafile backup set
channel ORA_DISK_2: starting incremental level 0 datafile backup set
channel ORA_DISK_1: specifying datafile(s) in backup set
input datafile file number=00001 name=+DATA/PROD/DATAFILE/system.257.1091
channel ORA_DISK_2: specifying datafile(s) in backup set
input datafile file number=00004 name=+DATA/PROD/DATAFILE/users.259.1091
channel ORA_DISK_1: starting piece 1 at 2026-11-23 01:00:01
channel ORA_DISK_2: starting piece 1 at 2026-11-23 01:00:01
RMAN-03009: failure of backup command on ORA_DISK_2 channel at 11/23/2026 01:07:12
ORA-19502: write error on file "/backup/PROD/l0_2_1.bkp", blockno 524289 (blocksize=8192)
ORA-27072: File I/O error
Linux-x86_64 Error: 28: No space left on device
Additional information: 4
continuing other job steps, job failed will not be re-run
channel ORA_DISK_1: finished piece 1 at 2026-11-23 01:09:30
channel ORA_DISK_1: backup set complete, elapsed time: 00:09:29
{BANNER}\
RMAN-03009: failure of backup command on ORA_DISK_2 channel at 11/23/2026 01:07:12
ORA-19502: write error on file "/backup/PROD/l0_2_1.bkp", blockno 524289 (blocksize=8192)
ORA-27072: File I/O error
Linux-x86_64 Error: 28: No space left on device
Additional information: 4

Recovery Manager complete.
"""

INSTANCE_DOWN = f"""\
{BANNER}\
RMAN-00554: initialization of internal recovery manager package failed
RMAN-04005: error from target database:
ORA-01034: ORACLE not available
ORA-27101: shared memory realm does not exist
Linux-x86_64 Error: 2: No such file or directory
Additional information: 4376
"""

MEDIA_MANAGER = f"""\
{BANNER}\
RMAN-03009: failure of backup command on t1 channel at 11/23/2026 03:00:00
ORA-19511: non RMAN, but media manager or vendor specific failure, error text:
   ANS1017E (RC-50)  Session rejected: TCP/IP connection failure
"""

WRAPPED_ORA = f"""\
{BANNER}\
RMAN-03009: failure of backup command on ORA_DISK_1 channel at 11/23/2026 03:00:00
ORA-17628: Oracle error 19505 returned by remote Oracle server
ORA-19505: failed to identify file "/u01/oradata/PROD/users01.dbf"
"""


def read(text: str) -> Transcript:
    transcript = Transcript()
    for line in text.splitlines():
        transcript.feed(line)
    return transcript


def test_success_transcript_is_not_a_failure() -> None:
    """A clean 19c run has no stack, no cause, and a finished step is ok."""
    t = read(SUCCESS_19C)
    assert not t.failed
    assert t.error_stack == ()
    assert t.cause is None
    assert t.inline_failures == 0
    assert step_cause(0, t, None) is None


def test_recovery_area_full_cause_is_headline_ora_of_final_stack() -> None:
    """FRA full: the cause is ORA-19809 from the final stack; the inline failure is counted."""
    t = read(RECOVERY_AREA_FULL)
    assert t.failed
    assert t.cause == "ORA-19809: limit exceeded for recovery files"
    assert t.inline_failures == 1
    assert t.error_stack == (
        *BANNER.splitlines(),
        "RMAN-03009: failure of backup command on ORA_DISK_1 channel at 08/20/2019 13:19:42",
        "ORA-19809: limit exceeded for recovery files",
        "ORA-19804: cannot reclaim 67108864 bytes disk space from 4781506560 limit",
    )
    assert step_cause(1, t, "ignored") == "ORA-19809: limit exceeded for recovery files"


def test_exit_zero_with_error_stack_is_a_failure() -> None:
    """An error stack fails the step even on exit 0; 'Recovery Manager complete.' proves nothing."""
    t = read(RECOVERY_AREA_FULL)
    assert t.failed
    assert step_cause(0, t, None) == "ORA-19809: limit exceeded for recovery files"


@pytest.mark.parametrize(
    ("transcript", "cause"),
    [
        (NOARCHIVELOG, "RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode"),
        (
            SYNTAX_ERROR,
            'RMAN-01009: syntax error: found "identifier" (RMAN-01008: the bad identifier was: '
            "DATABSE; RMAN-01007: at line 3 column 30 file: standard input)",
        ),
        (
            CREATE_FILE_FAILED,
            'ORA-19504: failed to create file "/backup/PROD/PROD_L0_0n2k3l4m_1_1.bkp" '
            "(Linux-x86_64 Error: 2: No such file or directory)",
        ),
        (
            ARCHIVED_LOG_MISSING,
            "ORA-19625: error identifying file /u01/fra/PROD/archivelog/o1_mf_1_812_mn2b3c4d_.arc "
            "(Linux-x86_64 Error: 2: No such file or directory)",
        ),
        (
            SNAPSHOT_ENQUEUE,
            "ORA-00230: operation disallowed: snapshot control file enqueue unavailable",
        ),
        (
            MULTI_CHANNEL,
            'ORA-19502: write error on file "/backup/PROD/l0_2_1.bkp", blockno 524289 '
            "(blocksize=8192) (Linux-x86_64 Error: 28: No space left on device)",
        ),
        (
            INSTANCE_DOWN,
            "ORA-01034: ORACLE not available (Linux-x86_64 Error: 2: No such file or directory)",
        ),
        (
            MEDIA_MANAGER,
            "ORA-19511: non RMAN, but media manager or vendor specific failure, error text: "
            "ANS1017E (RC-50) Session rejected: TCP/IP connection failure",
        ),
        (WRAPPED_ORA, 'ORA-19505: failed to identify file "/u01/oradata/PROD/users01.dbf"'),
    ],
    ids=[
        "noarchivelog",
        "syntax",
        "create-file",
        "archived-log-missing",
        "snapshot-enqueue",
        "multi-channel",
        "instance-down",
        "media-manager",
        "wrapped-ora",
    ],
)
def test_failure_transcript_yields_exact_cause(transcript: str, cause: str) -> None:
    """Each real-shaped failure yields its documented one-line cause, also via step_cause."""
    t = read(transcript)
    assert t.failed
    assert t.cause == cause
    assert step_cause(1, t, "Recovery Manager complete.") == cause


def test_warnings_and_empty_backups_are_not_failures() -> None:
    """RMAN-08120/08137/08138/08512 and 'no files to backup' neither fail nor become causes."""
    t = read(WARNINGS_ONLY)
    assert not t.failed
    assert t.cause is None
    assert t.inline_failures == 0
    assert step_cause(0, t, None) is None
    assert step_cause(1, t, None) == "exit status 1"


def test_non_failure_lines_inside_a_stack_never_become_the_cause() -> None:
    """Inside a stack, warnings are skipped and the framing line is the fallback cause."""
    t = read(
        BANNER
        + "RMAN-08137: WARNING: archived log not deleted, needed for standby\n"
        + "RMAN-03002: failure of backup command at 11/23/2026 02:05:00\n"
        + "RMAN-08512: waiting for snapshot control file enqueue\n"
    )
    assert t.cause == "RMAN-03002: failure of backup command at 11/23/2026 02:05:00"
    assert not t.nothing_to_backup


NOTHING = "RMAN-20242: specification does not match any archived log in the repository"


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        (NOTHING, NOTHING),
        (NOTHING[len("RMAN-20242: ") :], NOTHING[len("RMAN-20242: ") :]),
        (f"RMAN-06004: ORACLE error from recovery catalog database: {NOTHING}", NOTHING),
    ],
    ids=["code", "text", "nested"],
)
def test_nothing_matched_in_a_stack_is_the_cause(line: str, cause: str) -> None:
    """'No files matched' in a stack beats RMAN-03002 and marks the step as nothing to back up."""
    t = read(f"{BANNER}RMAN-03002: failure of backup command at 11/23/2026 02:05:00\n{line}\n")
    assert t.cause == cause
    assert t.nothing_to_backup


def test_nothing_matched_outside_a_stack_is_information() -> None:
    """Printed as information (BACKUP ARCHIVELOG ALL, no logs), it is no failure and no cause."""
    t = read(WARNINGS_ONLY)
    assert not t.nothing_to_backup
    assert t.inline_cause is None


@pytest.mark.parametrize(
    ("stack", "cause"),
    [
        (  # shape of issue 18 kind 1: ORA-01034 embedded heads the stack, ORA-27101 is lower
            "RMAN-00554: initialization of internal recovery manager package failed\n"
            "RMAN-04005: error from target database: ORA-01034: ORACLE not available\n"
            "ORA-27101: shared memory realm does not exist\n"
            "Linux-x86_64 Error: 2: No such file or directory\n",
            "RMAN-04005: error from target database: ORA-01034: ORACLE not available "
            "(Linux-x86_64 Error: 2: No such file or directory)",
        ),
        (  # RMAN-03014 and RMAN-06004 with the ORA on the next line
            "RMAN-03014: implicit resync of recovery catalog failed\n"
            "RMAN-06004: ORACLE error from recovery catalog database: \n"
            "ORA-01033: ORACLE initialization or shutdown in progress\n",
            "ORA-01033: ORACLE initialization or shutdown in progress",
        ),
        (  # issue 18 kind 3: a blank line inside the stack does not cut RMAN-00600's arguments
            "RMAN-00601: fatal error in recovery manager\n"
            "RMAN-03012: fatal error during compilation of command\n"
            "RMAN-03028: fatal error code for command backup : 600\n"
            "RMAN-00600: internal error, arguments [8064] [1] [/u01/fra/x.bkp]\n"
            "\n"
            "[] []\n",
            "RMAN-00600: internal error, arguments [8064] [1] [/u01/fra/x.bkp] [] []",
        ),
        (
            "RMAN-03009: failure of backup command on ORA_DISK_1 channel at 11/23/2026 03:00:00\n"
            'ORA-19504: failed to create file "/bk/x"\n'
            "ORA-27040: file create error, unable to create file\n"
            "SVR4 Error: 2: No such file or directory\n",
            'ORA-19504: failed to create file "/bk/x" (SVR4 Error: 2: No such file or directory)',
        ),
        (
            "RMAN-03009: failure of backup command on ORA_DISK_1 channel at 11/23/2026 03:00:00\n"
            'ORA-19502: write error on file "/bk/x", block number 9 (block size=8192)\n'
            "ORA-27072: File I/O error\n"
            "HPUX-ia64 Error: 28: No space left on device\n",
            'ORA-19502: write error on file "/bk/x", block number 9 (block size=8192) '
            "(HPUX-ia64 Error: 28: No space left on device)",
        ),
    ],
    ids=["ora01034-embedded", "resync-06004", "00600-blank-line", "solaris", "hpux"],
)
def test_stack_read_bottom_up_skipping_framing(stack: str, cause: str) -> None:
    """The last specific unit gives the cause; framing, wrappers and deeper layers do not."""
    t = read(BANNER + stack + "\nRMAN>\n\nRecovery Manager complete.\n")
    assert t.cause == cause


def test_blank_line_then_ordinary_output_ends_the_stack() -> None:
    """After a blank line, a line that is not part of a stack closes it and is read normally."""
    t = read(NOARCHIVELOG.replace("Recovery Manager complete.\n", "") + "Starting backup at x\n")
    assert t.error_stack[-1] == "RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode"
    assert t.progress == "Starting backup"


def test_inline_error_without_stack_explains_a_nonzero_exit() -> None:
    """RMAN-03009 + ORA lines printed inline give the cause of exit 1; not of a signal or exit 0."""
    t = read(
        "RMAN-03009: failure of backup command on ORA_DISK_1 channel at 11/23/2026 01:07:12\n"
        'ORA-19502: write error on file "/backup/l0_2_1.bkp", blockno 524289 (blocksize=8192)\n'
        "ORA-27072: File I/O error\n"
        "Linux-x86_64 Error: 28: No space left on device\n"
        "Additional information: 4\n"
        "continuing other job steps, job failed will not be re-run\n"
        "channel ORA_DISK_1: starting piece 1 at 2026-11-23 01:09:30\n"
    )
    cause = (
        'ORA-19502: write error on file "/backup/l0_2_1.bkp", blockno 524289 (blocksize=8192) '
        "(Linux-x86_64 Error: 28: No space left on device)"
    )
    assert not t.failed
    assert t.inline_cause == cause
    assert step_cause(1, t, "Recovery Manager complete.") == cause
    assert step_cause(143, t, None) == "terminated by SIGTERM"
    assert step_cause(0, t, None) is None


def test_inline_error_memory_is_bounded() -> None:
    """An endless inline error keeps at most MAX_STACK_LINES lines."""
    t = Transcript()
    t.feed("RMAN-03009: failure of backup command on ORA_DISK_1 channel at x")
    for i in range(10_000):
        t.feed(f"ORA-27072: File I/O error {i}")
    assert t.inline_cause == "ORA-27072: File I/O error 0"
    assert len(t._inline) == MAX_STACK_LINES


def test_last_stack_wins_and_stack_ends_at_blank_line() -> None:
    """A later stack replaces an earlier one; lines after a stack's end stay out of it."""
    t = read(
        NOARCHIVELOG.replace("Recovery Manager complete.\n", "")
        + "ORA-00001: not part of any stack\n"
        + CREATE_FILE_FAILED
    )
    assert t.error_stack[3].startswith("RMAN-03009")
    assert t.cause is not None
    assert t.cause.startswith("ORA-19504")
    t = read(NOARCHIVELOG + "ORA-00001: after the stack\n")
    assert t.error_stack[-1] == "RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode"


def test_progress_follows_meaningful_lines_shortened() -> None:
    """Progress shows the last meaningful line, shortened, across a whole successful run."""
    t = Transcript()
    seen: list[str | None] = []
    for line in SUCCESS_19C.splitlines():
        t.feed(line)
        if not seen or seen[-1] != t.progress:
            seen.append(t.progress)
    assert seen == [
        None,
        "connected to ORCLCDB",
        "Starting backup",
        "allocated channel ORA_DISK_1",
        "ORA_DISK_1: starting compressed incremental level 0 datafile backup set",
        "input datafile 00001 system01.dbf",
        "input datafile 00004 users01.dbf",
        "ORA_DISK_1: starting piece 1",
        "ORA_DISK_1: finished piece 1",
        "ORA_DISK_1: backup set complete, elapsed 00:00:15",
        "Finished backup",
        "Starting Control File and SPFILE Autobackup",
        "Finished Control File and SPFILE Autobackup",
    ]


@pytest.mark.parametrize(
    ("line", "progress"),
    [
        ("RMAN> 2> 3> allocated channel: ORA_DISK_1", "allocated channel ORA_DISK_1"),
        (
            "input archived log thread=1 sequence=8 RECID=1 STAMP=1209605035",
            "input archived log thread=1 sequence=8",
        ),
        ("including current control file in backup set", "including current control file"),
        ("including current SPFILE in backup set", "including current SPFILE"),
        ("channel ORA_DISK_1: deleting archived log(s)", "ORA_DISK_1: deleting archived log(s)"),
        ("channel ORA_DISK_3: starting piece 2 at 20-AUG-25", "ORA_DISK_3: starting piece 2"),
        (
            "RMAN-08512: waiting for snapshot control file enqueue",
            "waiting for snapshot control file enqueue",
        ),
        (
            "input datafile file number=00007 name=C:\\ORADATA\\PROD\\TOOLS01.DBF",
            "input datafile 00007 TOOLS01.DBF",
        ),
    ],
)
def test_progress_line_variants(line: str, progress: str) -> None:
    """Variants (prompts, archived logs, control file, SPFILE, deletion, Windows paths) shorten."""
    t = Transcript()
    t.feed(line)
    assert t.progress == progress


def test_progress_ignores_noise_lines() -> None:
    """Banner, channel SID, piece handle and the closing line leave progress unchanged."""
    t = Transcript()
    t.feed("channel ORA_DISK_1: starting piece 1 at 2025-08-20 01:33:27")
    for noise in (
        "channel ORA_DISK_1: SID=622 device type=DISK",
        "piece handle=/fra/0241i7hj_1_1 tag=FANOUT_L0 comment=NONE",
        "using channel ORA_DISK_1",
        "",
        "Recovery Manager complete.",
    ):
        t.feed(noise)
    assert t.progress == "ORA_DISK_1: starting piece 1"


def test_memory_stays_bounded_on_huge_output() -> None:
    """1e5 lines inside one stack keep at most MAX_STACK_LINES lines, each capped in length."""
    t = Transcript()
    t.feed(BANNER.splitlines()[0])
    t.feed("ORA-19502: write error on file " + "x" * 1_000_000)
    for i in range(100_000):
        t.feed(f"ORA-27072: File I/O error {i}")
    assert len(t.error_stack) == MAX_STACK_LINES
    assert max(len(line) for line in t.error_stack) <= 1000
    assert t.cause is not None
    assert len(t.cause) == MAX_CAUSE
    assert t.cause.endswith("…")


@pytest.mark.parametrize(
    ("exit_status", "stderr", "cause"),
    [
        (0, None, None),
        (0, "harmless warning", None),
        (1, None, "exit status 1"),
        (1, "   ", "exit status 1"),
        (127, "sh: exec: /u01/rman: not found", "exit status 127: sh: exec: /u01/rman: not found"),
        (137, None, "killed by SIGKILL"),
        (143, None, "terminated by SIGTERM"),
        (130, None, "interrupted by SIGINT"),
        (129, "", "hung up by SIGHUP"),
        (255, "ssh: connection closed", "exit status 255: ssh: connection closed"),
    ],
)  # fmt: skip
def test_step_cause_without_stack_describes_exit(
    exit_status: int, stderr: str | None, cause: str | None
) -> None:
    """Without a stack, exit 0 is ok; a non-zero exit (or 128+signal) is described with stderr."""
    assert step_cause(exit_status, Transcript(), stderr) == cause


def test_step_cause_is_one_trimmed_line() -> None:
    """A long multi-space stderr line becomes one line of at most MAX_CAUSE characters."""
    cause = step_cause(2, Transcript(), "error:\t" + "word  " * 100)
    assert cause is not None
    assert "\t" not in cause
    assert "  " not in cause
    assert len(cause) == MAX_CAUSE
