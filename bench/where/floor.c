/* The stdio floor: the least any stdio MCP server can do per point call on this host. One JSON-RPC line in, the
 * point query run from a statement prepared once (libpq, blocking), one line out with pgmcp's answer shape. No JSON
 * parser, no MCP layer, no transaction, no event loop: it finds the id and the bound value by searching the line
 * measure.py writes. Its CPU per call is what the kernel and libpq cost for the round trips every server makes, so
 * a server's own work is its CPU minus this. Usage: floor 'postgresql://...' (measure.py --floor runs it). */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char POINT_SQL[] = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

/* One write per answer, as a server that buffers its output makes. */
static void answer(const char *text, size_t length) {
    while (length > 0) {
        ssize_t written = write(STDOUT_FILENO, text, length);
        if (written <= 0) {
            exit(1);
        }
        text += written;
        length -= (size_t)written;
    }
}

static long number_after(const char *line, const char *key) {
    const char *at = strstr(line, key);
    return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONNINFO\n", argv[0]);
        return 2;
    }
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "floor: %s", PQerrorMessage(conn));
        return 1;
    }
    PGresult *prepared = PQprepare(conn, "point", POINT_SQL, 1, NULL);
    if (PQresultStatus(prepared) != PGRES_COMMAND_OK) {
        fprintf(stderr, "floor: %s", PQerrorMessage(conn));
        return 1;
    }
    PQclear(prepared);

    static char line[65536];
    static char out[1024];
    while (fgets(line, sizeof line, stdin)) {
        long id = number_after(line, "\"id\":");
        if (id < 0) {
            continue; /* a notification */
        }
        int length;
        if (strstr(line, "\"method\":\"initialize\"")) {
            length = snprintf(out, sizeof out,
                              "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"result\":{\"protocolVersion\":\"2025-06-18\","
                              "\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"floor\",\"version\":\"1\"}}}\n",
                              id);
        } else {
            char aid[24];
            snprintf(aid, sizeof aid, "%ld", number_after(line, "\"params\":["));
            const char *values[1] = {aid};
            PGresult *rows = PQexecPrepared(conn, "point", 1, values, NULL, NULL, 0);
            if (PQresultStatus(rows) != PGRES_TUPLES_OK || PQntuples(rows) != 1) {
                fprintf(stderr, "floor: %s", PQerrorMessage(conn));
                return 1;
            }
            length = snprintf(out, sizeof out,
                              "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"result\":{\"content\":[{\"type\":\"text\",\"text\":"
                              "\"{\\\"columns\\\":[{\\\"name\\\":\\\"abalance\\\",\\\"type\\\":\\\"int4\\\"}],"
                              "\\\"rows\\\":[[%s]],\\\"row_count\\\":1,\\\"truncated\\\":false}\"}],\"isError\":false}}\n",
                              id, PQgetvalue(rows, 0, 0));
            PQclear(rows);
        }
        answer(out, (size_t)length);
    }
    PQfinish(conn);
    return 0;
}
