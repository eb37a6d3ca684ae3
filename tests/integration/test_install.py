"""`cmake --install`: the binaries and the dispatcher's migrations land under
the prefix, and the installed dispatcher finds its migrations there without
SB_MIGRATIONS_DIR (and never falls back to the source tree's).

Installs the build tree into a temporary prefix, applies the migrations with
the installed switchboard-dispatcher --migrate-only to a fresh database of
the tests' PostgreSQL, then removes the installed migrations and checks that
the same command fails.
"""

import os
import shutil
import subprocess
import tempfile

import sbtest
from sbtest import Postgres

BINARIES = ("switchboard-ingress", "switchboard-dispatcher", "switchboard", "switchboard-sandbox",
            "switchboard-console")
SOURCE_MIGRATIONS = os.path.join(sbtest.REPO, "dispatcher", "migrations")

PG = Postgres()


def _env(url):
    env = dict(os.environ, DATABASE_URL=url)
    env.pop("SB_MIGRATIONS_DIR", None)
    env.pop("SB_MIGRATIONS_DIR_FILE", None)
    return env


def _migrate(binary, url):
    return subprocess.run([binary, "--migrate-only"], env=_env(url), capture_output=True, text=True,
                          timeout=120)


def test_install_and_migrate():
    prefix = tempfile.mkdtemp(prefix="sb-install-")
    url = PG.create()
    empty = None
    try:
        out = subprocess.run([shutil.which("cmake") or "cmake", "--install", sbtest.BUILD, "--prefix", prefix],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        for name in BINARIES:
            path = os.path.join(prefix, "bin", name)
            assert os.access(path, os.X_OK), "not installed: %s" % path
        installed = os.path.join(prefix, "share", "switchboard", "migrations")
        want = sorted(f for f in os.listdir(SOURCE_MIGRATIONS) if f.endswith(".sql"))
        got = sorted(os.listdir(installed)) if os.path.isdir(installed) else []
        assert got == want, "installed migrations %s, want %s" % (got, want)

        dispatcher = os.path.join(prefix, "bin", "switchboard-dispatcher")
        run = _migrate(dispatcher, url)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "migrations applied dir=%s" % os.path.join(prefix, "bin", "..", "share", "switchboard",
                                                          "migrations") in run.stderr, run.stderr
        rows = Postgres.psql(url, "SELECT count(*) FROM schema_migrations")
        assert int(rows[0][0]) == len(want), rows

        # Without the installed migrations the installed binary fails: it
        # does not fall back to the source tree.
        shutil.rmtree(installed)
        empty = PG.create()
        run = _migrate(dispatcher, empty)
        assert run.returncode != 0, run.stdout + run.stderr
        assert "cannot open migrations dir=%s" % prefix in run.stderr, run.stderr
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
        PG.drop(url)
        if empty:
            PG.drop(empty)


def test_build_tree_default():
    # Run from the build tree, the dispatcher reads the source tree's.
    out = subprocess.run([sbtest.DISPATCHER, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "(SB_MIGRATIONS_DIR unset: %s)" % os.path.realpath(SOURCE_MIGRATIONS) in out.stdout, out.stdout


if __name__ == "__main__":
    try:
        sbtest.run_tests([test_install_and_migrate, test_build_tree_default])
    finally:
        PG.close()
