/*
 * header_cxx.cpp - include/urt.h compiles as C++ (-std=c++11 -Wall -Wextra
 * -pedantic -Werror), with C linkage for every declaration. Built as part of
 * every build; never linked or run.
 */
#include <urt.h>

static void *task_body(void *arg) { return arg; }

int urt_header_check_cxx();
int urt_header_check_cxx()
{
    urt_config cfg = urt_config();
    urt_spawn_opts opts = urt_spawn_opts();
    urt_buf buf = urt_buf();
    urt_worker_stats st = urt_worker_stats();
    urt_fn fn = task_body;
    int (*spawn)(urt_runtime *, urt_task **, urt_fn, void *) = urt_spawn;
    cfg.flags = URT_CONFIG_PIN_WORKERS | URT_CONFIG_NO_LIFO;
    opts.flags = URT_TASK_MIGRATABLE;
    return static_cast<int>(cfg.flags + opts.flags + buf.len + st.polls) + (fn != nullptr) +
           (spawn != nullptr) + URT_VERSION_MAJOR;
}
