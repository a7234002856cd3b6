/*
 * test_fs.c - the file calls (urt_readv .. urt_mkdirat) as ring ops: each
 * does what its syscall does, success and error paths; bad input gives a
 * clear errno; op timeouts, deadlines and cancellation end pending ones
 * (readv on an empty pipe, openat of a FIFO) without losing data or an fd;
 * 8 tasks copy a file through readv/writev at offsets byte for byte; inside
 * urt_block_in_place they are plain syscalls. The checks are in
 * tests/support/fs_checks.h, shared with test_fs_fallback.c.
 */
#define FS_SUITE fs
#define FS_FALLBACK 0
#include "tests/support/fs_checks.h"
