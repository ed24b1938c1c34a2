/*
 * kmem_stress: generate kmem tracepoint events as fast as possible, for bench_record.py.
 *
 * usage: kmem_stress SECONDS PROCS KIND [RATE]
 *   KIND: open (filp + names_cache per open/close), mmap (vm_area_struct + maple_node per map)
 *   RATE: loop iterations per second per process (0 or absent: as fast as possible); the
 *         loop sleeps between batches of 64 iterations to hold it.
 * Prints the number of loop iterations done by all processes on stdout.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned long run(double seconds, int mmap_kind, double rate)
{
	double start = now(), end = start + seconds;
	unsigned long n = 0;
	while (1) {
		if (rate > 0) {
			double ahead = start + n / rate - now();
			if (ahead > 0) {
				struct timespec ts = { (time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9) };
				nanosleep(&ts, NULL);
			}
		}
		for (int i = 0; i < 64; i++) {
			if (mmap_kind) {
				void *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE,
					       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (p != MAP_FAILED)
					munmap(p, 4 * 4096);
			} else {
				int fd = open("/dev/null", O_RDONLY);
				if (fd >= 0)
					close(fd);
			}
		}
		n += 64;
		if (now() >= end)
			return n;
	}
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s SECONDS PROCS open|mmap [RATE]\n", argv[0]);
		return 2;
	}
	double seconds = atof(argv[1]);
	int procs = atoi(argv[2]);
	int mmap_kind = strcmp(argv[3], "mmap") == 0;
	double rate = argc == 5 ? atof(argv[4]) : 0;
	int fds[2];
	if (pipe(fds))
		return 1;
	for (int i = 0; i < procs; i++) {
		if (fork() == 0) {
			unsigned long n = run(seconds, mmap_kind, rate);
			if (write(fds[1], &n, sizeof(n)) != sizeof(n))
				_exit(1);
			_exit(0);
		}
	}
	close(fds[1]);
	unsigned long total = 0, n;
	while (read(fds[0], &n, sizeof(n)) == sizeof(n))
		total += n;
	while (wait(NULL) > 0)
		;
	printf("%lu\n", total);
	return 0;
}
