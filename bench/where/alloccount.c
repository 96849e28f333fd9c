/* Counts a process's calls to the malloc family, for bench/where/measure.sh (LD_PRELOAD).
 *
 * Each function hands the work to glibc's own allocator (__libc_*) and adds one to a counter. The counters live in
 * a file mapped shared (path in ALLOCCOUNT_FILE), so the measuring script reads them at any moment without asking
 * the process, and takes the difference over its window of calls: start-up and warm-up are left out. Allocations
 * made before the constructor has mapped the file are not counted; they are start-up's.
 *
 * Layout of the file: little-endian uint64 counters in the order of enum below.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

enum { MALLOC, CALLOC, REALLOC, ALIGNED, FREE, BYTES, COUNTERS };

static uint64_t *counters;

static inline void count(int which, uint64_t bytes) {
    uint64_t *c = counters;
    if (c) {
        __atomic_fetch_add(&c[which], 1, __ATOMIC_RELAXED);
        if (bytes) __atomic_fetch_add(&c[BYTES], bytes, __ATOMIC_RELAXED);
    }
}

__attribute__((constructor)) static void map_counters(void) {
    const char *path = getenv("ALLOCCOUNT_FILE");
    if (!path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    size_t size = COUNTERS * sizeof(uint64_t);
    if (ftruncate(fd, (off_t)size) == 0) {
        void *mapped = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mapped != MAP_FAILED) counters = mapped;
    }
    close(fd);
}

void *malloc(size_t size) {
    count(MALLOC, size);
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
    count(CALLOC, n * size);
    return __libc_calloc(n, size);
}

void *realloc(void *ptr, size_t size) {
    count(REALLOC, size);
    return __libc_realloc(ptr, size);
}

void free(void *ptr) {
    if (ptr) count(FREE, 0);
    __libc_free(ptr);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    count(ALIGNED, size);
    void *ptr = __libc_memalign(alignment, size);
    if (!ptr) return ENOMEM;
    *out = ptr;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    count(ALIGNED, size);
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    count(ALIGNED, size);
    return __libc_memalign(alignment, size);
}
