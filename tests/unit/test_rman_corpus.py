"""rman.py against real RMAN transcripts collected from public sources (tests/rman_corpus/)."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from fanout.rman import Transcript, step_cause

CORPUS = Path(__file__).resolve().parents[1] / "rman_corpus"
HEADER_END = "# ---\n"

# transcript → (cause of a step that exits 1, rman's own "no files matched")
# A transcript without a final stack fails only by its exit status; its cause is then the
# error rman printed inline. Successes (with or without warnings) have no cause at exit 0.
FAILED = "failed"  # an error stack: the step fails whatever the exit status
INLINE = "inline"  # no stack: the cause explains a non-zero exit
OK = "ok"  # no stack and nothing inline: exit 0 is a success
EXPECTED: dict[str, tuple[str, str | None, bool]] = {
    "catalog_ora01033_es.log": (
        FAILED,
        "RMAN-04004: error from recovery catalog database: "
        "ORA-01033: inicializacion o cierre de ORACLE en curso",
        False,
    ),
    "catalog_ora01033_11g.log": (
        FAILED,
        "RMAN-04004: error from recovery catalog database: "
        "ORA-01033: ORACLE initialization or shutdown in progress",
        False,
    ),
    "catalog_tns_ora12154.log": (
        FAILED,
        "RMAN-04004: error from recovery catalog database: "
        "ORA-12154: TNS:could not resolve the connect identifier specified",
        False,
    ),
    "target_ora12514.log": (
        FAILED,
        "ORA-12514: TNS:listener does not currently know of service requested in connect "
        "descriptor",
        False,
    ),
    "sbt_opc_kbhs00715.log": (
        FAILED,
        "ORA-19511: non RMAN, but media manager or vendor specific failure, error text: "
        "KBHS-00715: HTTP error occurred 'operation-unauthorized'",
        False,
    ),
    "sbt_opc_kbhs01002.log": (
        FAILED,
        "ORA-19511: Error received from media manager layer, error text: KBHS-01002: unable "
        "to open Oracle Database Backup Service Library parameter file /home/oracle/config",
        False,
    ),
    "sbt_restore_failed_open.log": (
        FAILED,
        "ORA-19511: Error received from media manager layer, error text: "
        "Failed to open backup file for restore.",
        False,
    ),
    "sbt_data_protector_inline.log": (
        INLINE,
        "ORA-19511: Error received from media manager layer, error text: "
        "Vendor specific error: OB2_StartObjectBackup() failed ERR(-17)",
        False,
    ),
    "fatal_10038.log": (
        FAILED,
        "RMAN-10038: database session for channel default terminated unexpectedly",
        False,
    ),
    "internal_00600_zh_fra.log": (FAILED, "ORA-19809: 超出了恢复文件数的限制", False),
    "internal_00600_zh_recover.log": (
        FAILED,
        "ORA-00313: 无法打开日志组 2 (用于线程 1) 的成员 "
        "(O/S-Error: (OS 2) 系统找不到指定的文件。)",
        False,
    ),
    "nothing_matched_catalog.log": (
        FAILED,
        "RMAN-20242: specification does not match any archivelog in the recovery catalog",
        True,
    ),
    "nothing_matched_delete.log": (
        FAILED,
        "ORA-19606: Cannot copy or restore to snapshot control file",
        False,
    ),
    "nothing_matched_then_noarchivelog.log": (
        FAILED,
        "RMAN-06149: cannot BACKUP DATABASE in NOARCHIVELOG mode",
        False,
    ),
    "tde_wallet_blank_in_stack.log": (FAILED, "ORA-19914: unable to encrypt backup", False),
    "windows_restore_inline_zh.log": (
        INLINE,
        'ORA-19504: 无法创建文件"E:\\APP\\ADMINISTRATOR\\ORADATA\\ORCL\\EXAMPLE01.DBF" '
        "(O/S-Error: (OS 3) 系统找不到指定的路径。)",
        False,
    ),
    "windows_create_file_os3.log": (
        FAILED,
        'ORA-19504: failed to create file "Z:\\BACKUPS\\CFGRMN\\TEST_3GRL4QK9_1_120161117" '
        "(O/S-Error: (OS 3) The system cannot find the path specified.)",
        False,
    ),
    "windows_archived_log_missing_os3.log": (
        FAILED,
        "ORA-19625: error identifying file "
        "F:\\MNT\\FAST_RECOVERY_AREA\\CFG\\ARCHIVELOG\\2017_03_07\\O1_MF_1_1_DCXGLL1C_.ARC "
        "(O/S-Error: (OS 3) The system cannot find the path specified.)",
        False,
    ),
    "aix_restore_inline.log": (
        INLINE,
        'ORA-19505: failed to identify file "/backup/DB_PRODDB_s70_p1_t939760538" '
        "(IBM AIX RISC System/6000 Error: 2: No such file or directory)",
        False,
    ),
    "fra_full_ja.log": (FAILED, "ORA-19809: リカバリ・ファイルの制限を超えています", False),
    "resync_controlfile_backup.log": (
        FAILED,
        "ORA-00245: control file backup operation failed",
        False,
    ),
    "fra_full_inline_quote.log": (INLINE, "ORA-19809: limit exceeded for recovery files", False),
    "success_no_archived_logs_windows.log": (OK, None, False),
    "success_sbt_opc.log": (OK, None, False),
    "warning_08137_streams.log": (OK, None, False),
}


def read_corpus(name: str) -> tuple[str, Transcript]:
    """(header, transcript fed with the file's lines, the source's indentation removed)."""
    header, body = (CORPUS / name).read_text(encoding="utf-8").split(HEADER_END, 1)
    transcript = Transcript()
    for line in textwrap.dedent(body).splitlines():
        transcript.feed(line)
    return header, transcript


def test_every_corpus_file_has_an_expectation() -> None:
    """Each transcript in the corpus is asserted below, and each assertion has its file."""
    assert sorted(p.name for p in CORPUS.glob("*.log")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_names_its_source(name: str) -> None:
    """Each file starts with its source, the kind it covers and what was trimmed."""
    header, _ = read_corpus(name)
    keys = [line.split(":", 1)[0] for line in header.splitlines()]
    assert keys == ["# source", "# kind", "# trimmed"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_transcript_yields_its_cause(name: str) -> None:
    """Each real transcript gives the verdict and one-line cause a DBA would want."""
    verdict, cause, nothing = EXPECTED[name]
    _, t = read_corpus(name)
    assert t.failed is (verdict == FAILED)
    assert t.nothing_to_backup is nothing
    assert step_cause(1, t, "Recovery Manager complete.") == (
        cause or "exit status 1: Recovery Manager complete."
    )
    if verdict == FAILED:
        assert t.cause == cause
        assert step_cause(0, t, None) == cause
    else:
        assert t.cause is None
        assert step_cause(0, t, None) is None
        assert t.inline_cause == cause
        assert step_cause(137, t, None) == "killed by SIGKILL"  # a signal says more


def _reading(t: Transcript) -> tuple[object, ...]:
    return (
        t.failed,
        t.error_stack,
        t.cause,
        t.nothing_to_backup,
        t.inline_cause,
        t.inline_failures,
        t.progress,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lines_fed_in_batches_read_as_lines_fed_one_by_one(name: str) -> None:
    """feed_lines (the engine's, one read's lines at a time) gives what feed gives line by
    line, after every batch, for batches of every size up to 7 and a random split."""
    _, one_by_one = read_corpus(name)
    _, body = (CORPUS / name).read_text(encoding="utf-8").split(HEADER_END, 1)
    lines = textwrap.dedent(body).splitlines()
    rng = random.Random(name)
    cuts = sorted(rng.sample(range(1, len(lines)), min(5, len(lines) - 1)))
    splits = [list(range(0, len(lines), size)) for size in range(1, 8)] + [[0, *cuts]]
    for starts in splits:
        batched, single = Transcript(), Transcript()
        for begin, end in zip(starts, [*starts[1:], len(lines)], strict=True):
            batched.feed_lines(lines[begin:end])
            for line in lines[begin:end]:
                single.feed(line)
            assert _reading(batched) == _reading(single), (starts, begin)
        assert _reading(batched) == _reading(one_by_one)
