/* Where io_uring is blocked (seccomp, as in many containers), urt_runtime_create
 * says so with -EPERM (or -ENOSYS) instead of crashing or hanging. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <urt.h>

static void block_io_uring(int err)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}

Test(uring_unavailable, blocked_by_seccomp_gives_eperm, .timeout = 30)
{
    block_io_uring(EPERM);
    urt_runtime *rt = (urt_runtime *)0x1;
    urt_config cfg = {0};
    cfg.workers = 2;
    cr_assert_eq(urt_runtime_create(&rt, &cfg), -EPERM);
    cr_assert_null(rt);
}

Test(uring_unavailable, missing_syscall_gives_enosys, .timeout = 30)
{
    block_io_uring(ENOSYS);
    urt_runtime *rt = (urt_runtime *)0x1;
    cr_assert_eq(urt_runtime_create(&rt, NULL), -ENOSYS);
    cr_assert_null(rt);
}
