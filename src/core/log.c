#include "sollol/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum sol_log_level current_level = SOL_LOG_INFO;
static const char *current_tag = "sollol";
static int json_lines;

void sol_log_set_json(int json)
{
    json_lines = json;
}

int sol_log_is_json(void)
{
    return json_lines;
}

const char *sol_log_tag(void)
{
    return current_tag;
}

void sol_log_write_line(const char *line, size_t len)
{
    /* One write per line; a failed log write has nowhere to be reported. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

/* Appends s as JSON string content (no quotes) to out; returns bytes. */
static size_t json_escape(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 6 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            out[o++] = '\\';
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

void sol_log_set_level(enum sol_log_level level)
{
    current_level = level;
}

int sol_log_parse_level(const char *name)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void sol_log_set_tag(const char *tag)
{
    current_tag = tag;
}

int sol_log_enabled(enum sol_log_level level)
{
    return level <= current_level;
}

void sol_log(enum sol_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (!sol_log_enabled(level))
        return;
    char line[4096 * 6 + 256];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, current_tag, names[level]);
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    if (m > (int)sizeof msg - 1)
        m = (int)sizeof msg - 1;
    if (json_lines) {
        /* Same fields, as one JSON object (the message may hold anything). */
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"tag\":\"%s\","
                     "\"level\":\"%s\",\"msg\":\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, current_tag, names[level]);
        n += (int)json_escape(line + n, sizeof line - (size_t)n - 3, msg, (size_t)m);
        line[n++] = '"';
        line[n++] = '}';
    } else {
        memcpy(line + n, msg, (size_t)m);
        n += m;
    }
    line[n++] = '\n';
    /* One write per line; a failed log write has nowhere to be reported. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
