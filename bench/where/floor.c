/* The stdio floor: the least any stdio MCP server can do per point call on this host. One JSON-RPC line in, the
 * point query run from a statement prepared once (libpq, blocking), one line out with pgmcp's answer shape. No JSON
 * parser, no MCP layer, no transaction, no event loop: it finds the id and the bound value by searching the line
 * measure.py writes. Its CPU per call is what the kernel and libpq cost for the round trips every server makes, so
 * a server's own work is its CPU minus this. Usage: floor 'postgresql://...' (measure.py --floor runs it).
 *
 * FLOOR_SYNCS=1 or 3 runs the query as pgmcp runs a read instead: between START TRANSACTION READ ONLY and ROLLBACK,
 * pipelined in one write, under one Sync (PostgreSQL answers in one segment) or under three (one segment per
 * statement, as pgmcp's flight is answered). The difference is what PostgreSQL's flushes cost a server in wake-ups
 * (BENCHMARKS.md, issue 17's fifth step). */
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static void fail(PGconn *conn) {
    fprintf(stderr, "floor: %s", PQerrorMessage(conn));
    exit(1);
}

/* BEGIN, the point query and ROLLBACK in pipeline mode, corked so that they leave in one segment whatever the
 * number of Syncs; returns the query's result. */
static PGresult *run_in_transaction(PGconn *conn, const char *const *values, int syncs) {
    int cork = 1;
    setsockopt(PQsocket(conn), IPPROTO_TCP, TCP_CORK, &cork, sizeof cork);
    if (!PQsendQueryParams(conn, "START TRANSACTION READ ONLY", 0, NULL, NULL, NULL, NULL, 0) ||
        (syncs == 3 && !PQpipelineSync(conn)) ||
        !PQsendQueryPrepared(conn, "point", 1, values, NULL, NULL, 0) ||
        (syncs == 3 && !PQpipelineSync(conn)) ||
        !PQsendQueryParams(conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(conn)) {
        fail(conn);
    }
    cork = 0;
    setsockopt(PQsocket(conn), IPPROTO_TCP, TCP_CORK, &cork, sizeof cork);
    PGresult *rows = NULL;
    for (int synced = 0; synced < syncs;) {
        PGresult *result = PQgetResult(conn);
        if (result == NULL) {
            continue; /* the end of one statement's results */
        }
        switch (PQresultStatus(result)) {
        case PGRES_PIPELINE_SYNC:
            synced++;
            PQclear(result);
            break;
        case PGRES_TUPLES_OK:
            rows = result;
            break;
        case PGRES_COMMAND_OK:
            PQclear(result);
            break;
        default:
            fail(conn);
        }
    }
    return rows;
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
    int syncs = getenv("FLOOR_SYNCS") ? atoi(getenv("FLOOR_SYNCS")) : 0;
    if (syncs != 0 && syncs != 1 && syncs != 3) {
        fprintf(stderr, "floor: FLOOR_SYNCS is 1 or 3\n");
        return 2;
    }
    if (syncs != 0 && !PQenterPipelineMode(conn)) {
        fail(conn);
    }

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
            PGresult *rows = syncs == 0 ? PQexecPrepared(conn, "point", 1, values, NULL, NULL, 0)
                                        : run_in_transaction(conn, values, syncs);
            if (rows == NULL || PQresultStatus(rows) != PGRES_TUPLES_OK || PQntuples(rows) != 1) {
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
