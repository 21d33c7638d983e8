/*
 * log.h - leveled logging to stderr (journald picks it up).
 *
 * One process-wide sink. Lines are written with a single write(2) so that
 * concurrent writers (the daemon and its children sharing stderr) never
 * interleave inside a line. Never blocks the loop for longer than one
 * write to a pipe or tty.
 */
#ifndef SOLLOL_LOG_H
#define SOLLOL_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum sol_log_level { SOL_LOG_ERROR = 0, SOL_LOG_WARN, SOL_LOG_INFO, SOL_LOG_DEBUG };

/* Sets the most verbose level that is still written. Default SOL_LOG_INFO. */
void sol_log_set_level(enum sol_log_level level);

/* Parses "error|warn|info|debug"; returns -1 for anything else. */
int sol_log_parse_level(const char *name);

/* 0: text lines "<time> <tag> <level> <message>"; 1: one JSON object per
 * line {"time","tag","level","msg"} for log shippers. Default 0. */
void sol_log_set_json(int json);

/* The format chosen with sol_log_set_json(): 1 for JSON lines, else 0.
 * Lets modules that write structured lines (the access log) match it. */
int sol_log_is_json(void);

/* Writes `line` (len bytes, already ending in '\n') to the sink with one
 * write(2), unchanged. For modules that format whole lines themselves. */
void sol_log_write_line(const char *line, size_t len);

/* The tag set with sol_log_set_tag(). Static. */
const char *sol_log_tag(void);

/* Sets the tag written in front of every line ("sollold", "ollama-sim"). */
void sol_log_set_tag(const char *tag);

/* Nonzero when a line at `level` would be written: lets callers skip
 * building expensive debug text. */
int sol_log_enabled(enum sol_log_level level);

/* Writes one line: "<time> <tag> <level> <message>\n". A trailing newline in
 * fmt is not needed. Messages longer than 4 KiB are cut. */
void sol_log(enum sol_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SOL_ERROR(...) sol_log(SOL_LOG_ERROR, __VA_ARGS__)
#define SOL_WARN(...)  sol_log(SOL_LOG_WARN, __VA_ARGS__)
#define SOL_INFO(...)  sol_log(SOL_LOG_INFO, __VA_ARGS__)
#define SOL_DEBUG(...)                                                                             \
    do {                                                                                           \
        if (sol_log_enabled(SOL_LOG_DEBUG))                                                        \
            sol_log(SOL_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

#endif
