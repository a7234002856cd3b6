/*
 * header_c.c - include/urt.h compiles on its own as strict ISO C11
 * (-std=c11 -Wall -Wextra -pedantic -Werror): no GNU extensions, no missing
 * includes. Built as part of every build; never linked or run.
 */
#include <urt.h>

/* the declarations are usable: take a few addresses, fill the structs */
static int (*const spawn_fn)(urt_runtime *, urt_task **, urt_fn, void *) = urt_spawn;
static ssize_t (*const recv_fn)(int, void *, size_t, int) = urt_recv;

int urt_header_check_c(void);
int urt_header_check_c(void)
{
    urt_config cfg = {0};
    urt_spawn_opts opts = {0};
    urt_buf buf = {0};
    urt_worker_stats st = {0};
    cfg.flags = URT_CONFIG_PIN_WORKERS | URT_CONFIG_NO_LIFO;
    opts.flags = URT_TASK_MIGRATABLE;
    return (int)cfg.flags + (int)opts.flags + (int)buf.len + (int)st.polls +
           (spawn_fn != 0) + (recv_fn != 0) + URT_VERSION_MAJOR;
}
