/*  sb_store_migrate: the store's migrations (sb_store_migrate in
    sb_store.h). dispatcher/migrations/NNNN_name.sql are applied in name
    order, those not yet in schema_migrations, each in a transaction of its
    own and recorded there in it. A session advisory lock, held across the
    files, makes a second dispatcher starting at the same time wait and
    then find everything applied. A migration may rewrite a table: its
    round trips get a longer deadline (S_MIGRATE_TIMEOUT_MS), on both
    sides (statement and lock timeouts set for the session, reset after).

    Limits. A file is at most S_MIGRATION_MAX bytes, without NUL bytes; it
    runs with the simple protocol (several statements, no parameters).
*/
#include "sb_store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MODULE "store"

//  Session advisory lock held while migrating ("sbmigrat").
#define S_MIGRATE_LOCK "8314328161553899892"
//  Largest migration file we read.
#define S_MIGRATION_MAX (4 * 1024 * 1024)
//  Deadline of a migration's round trips (a migration may rewrite a table).
#define S_MIGRATE_TIMEOUT_MS 600000

static int
s_name_cmp (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

//  dir/*.sql names, sorted. NULL on error (logged), with *count set.
static char **
s_migration_names (const char *dir, size_t *count)
{
    *count = 0;
    DIR *d = opendir (dir);
    if (!d) {
        char buf[128];
        sb_error (S_MODULE, "cannot open migrations dir=%s error=\"%s\"", dir,
                  sb_strerror (errno, buf, sizeof buf));
        return NULL;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    bool failed = false;
    while ((e = readdir (d))) {
        size_t len = strlen (e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp (e->d_name + len - 4, ".sql") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc (names, cap * sizeof (*names));
            if (!grown) {
                failed = true;
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup (e->d_name))) {
            failed = true;
            break;
        }
        n++;
    }
    closedir (d);
    if (failed) {
        for (size_t i = 0; i < n; i++)
            free (names[i]);
        free (names);
        sb_error (S_MODULE, "out of memory listing migrations");
        return NULL;
    }
    if (n)
        qsort (names, n, sizeof (*names), s_name_cmp);
    *count = n;
    return names ? names : calloc (1, sizeof (char *));
}

//  The file's content, NUL-terminated. Caller frees; NULL on error (logged).
static char *
s_read_file (const char *path)
{
    char buf[128];
    FILE *f = fopen (path, "rb");
    if (!f) {
        sb_error (S_MODULE, "cannot open migration file=%s error=\"%s\"", path,
                  sb_strerror (errno, buf, sizeof buf));
        return NULL;
    }
    char *data = malloc (S_MIGRATION_MAX + 1);
    size_t size = data ? fread (data, 1, S_MIGRATION_MAX + 1, f) : 0;
    bool bad = !data || ferror (f) || size > S_MIGRATION_MAX;
    fclose (f);
    if (bad) {
        sb_error (S_MODULE, "cannot read migration file=%s (unreadable or over %d bytes)", path,
                  S_MIGRATION_MAX);
        free (data);
        return NULL;
    }
    data[size] = 0;
    if (strlen (data) != size) {
        sb_error (S_MODULE, "migration file=%s contains a NUL byte", path);
        free (data);
        return NULL;
    }
    return data;
}

//  Apply one file in its own transaction, recording it.
static int
s_migrate_one (sb_store_t *self, const char *dir, const char *name)
{
    char version[256];
    snprintf (version, sizeof version, "%.*s", (int) (strlen (name) - 4), name);
    const char *params[] = {version};
    PGresult *r = sb_store_exec (self, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
                                 params, PGRES_TUPLES_OK, "migration lookup");
    if (!r)
        return -1;
    bool applied = PQntuples (r) > 0;
    PQclear (r);
    if (applied)
        return 0;

    size_t plen = strlen (dir) + strlen (name) + 2;
    char *path = malloc (plen);
    if (!path)
        return -1;
    snprintf (path, plen, "%s/%s", dir, name);
    char *sql = s_read_file (path);
    free (path);
    if (!sql)
        return -1;

    int rc = -1;
    if (sb_store_exec_ok (self, "BEGIN", "migration begin") != 0)
        goto done;
    //  The file is our own SQL, several statements: the simple protocol.
    r = sb_store_run (self, sql, 0, NULL, "migration");
    if (!r)
        goto rollback;
    if (PQresultStatus (r) != PGRES_COMMAND_OK && PQresultStatus (r) != PGRES_TUPLES_OK) {
        char line[512];
        const char *pos = PQresultErrorField (r, PG_DIAG_STATEMENT_POSITION);
        sb_error (S_MODULE, "migration failed version=%s error=\"%s\" position=%s", version,
                  sb_store_line (PQresultErrorMessage (r), line, sizeof line), pos ? pos : "-");
        PQclear (r);
        goto rollback;
    }
    PQclear (r);
    r = sb_store_exec (self,
                       "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now ())", 1,
                       params, PGRES_COMMAND_OK, "migration record");
    if (!r)
        goto rollback;
    PQclear (r);
    r = sb_store_exec (self, "COMMIT", 0, NULL, PGRES_COMMAND_OK, "migration commit");
    bool ok = r && strcmp (PQcmdStatus (r), "COMMIT") == 0;
    PQclear (r);
    if (ok) {
        sb_info (S_MODULE, "migration applied version=%s", version);
        rc = 0;
    }
    goto done;
rollback:
    if (self->conn)
        sb_store_exec_ok (self, "ROLLBACK", "migration rollback");
done:
    free (sql);
    return rc;
}

int
sb_store_migrate (sb_store_t *self, const char *dir)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    size_t count;
    char **names = s_migration_names (dir, &count);
    if (!names)
        return -1;
    int rc = -1;
    //  A migration may take long (or wait for another dispatcher's): a
    //  longer deadline, on both sides, for this session's migrations.
    int timeout_ms = self->timeout_ms;
    self->timeout_ms = timeout_ms > S_MIGRATE_TIMEOUT_MS ? timeout_ms : S_MIGRATE_TIMEOUT_MS;
    char set[96];
    snprintf (set, sizeof set, "SET statement_timeout = %d; SET lock_timeout = %d",
              self->timeout_ms - self->timeout_ms / 5, self->timeout_ms / 2);
    PGresult *r = NULL;
    if (sb_store_exec_ok (self, set, "migration timeouts") != 0)
        goto done;
    //  A session lock: held across the per-file transactions, so a second
    //  dispatcher waits here and then finds everything applied.
    r = sb_store_exec (self, "SELECT pg_advisory_lock (" S_MIGRATE_LOCK ")", 0, NULL,
                       PGRES_TUPLES_OK, "migration lock");
    if (!r)
        goto done;
    PQclear (r);
    r = sb_store_exec (self,
                       "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version text PRIMARY KEY,"
                       " applied_at timestamptz NOT NULL DEFAULT now ())",
                       0, NULL, PGRES_COMMAND_OK, "create schema_migrations");
    if (r) {
        PQclear (r);
        size_t i;
        for (i = 0; i < count; i++)
            if (s_migrate_one (self, dir, names[i]) != 0)
                break;
        rc = i == count ? 0 : -1;
    }
    PQclear (sb_store_exec (self, "SELECT pg_advisory_unlock (" S_MIGRATE_LOCK ")", 0, NULL,
                            PGRES_TUPLES_OK, "migration unlock"));
    //  New tables: statements prepared before now may be stale.
    if (rc == 0 && self->prepared) {
        sb_store_exec_ok (self, "DEALLOCATE ALL", "deallocate");
        self->prepared = false;
    }
done:
    if (self->conn)
        sb_store_exec_ok (self, "RESET statement_timeout; RESET lock_timeout",
                          "migration timeouts");
    self->timeout_ms = timeout_ms;
    for (size_t i = 0; i < count; i++)
        free (names[i]);
    free (names);
    return rc;
}

void
sb_store_migrations_default (char *dir, size_t size, const char *build_bin_dir)
{
    char exe[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? memchr (exe, '/', (size_t) n) : NULL;
    if (!slash) {
        snprintf (dir, size, "%s", SB_MIGRATIONS_INSTALLED);
        return;
    }
    exe[n] = '\0';
    *strrchr (exe, '/') = '\0';  //  the binary's folder
    char build[PATH_MAX];
    if (realpath (build_bin_dir, build) && strcmp (exe, build) == 0)
        snprintf (dir, size, "%s", SB_MIGRATIONS_DIR);
    else if (snprintf (dir, size, "%s/%s", exe, SB_MIGRATIONS_BESIDE) >= (int) size)
        snprintf (dir, size, "%s", SB_MIGRATIONS_INSTALLED);
}

char **
sb_store_migrations_list (const char *dir, size_t *count)
{
    char **names = s_migration_names (dir, count);
    for (size_t i = 0; names && i < *count; i++)
        names[i][strlen (names[i]) - 4] = 0;  //  "0001_init.sql": the version 0001_init
    return names;
}

void
sb_store_migrations_free (char ***names_p, size_t count)
{
    if (!*names_p)
        return;
    for (size_t i = 0; i < count; i++)
        free ((*names_p)[i]);
    free (*names_p);
    *names_p = NULL;
}
