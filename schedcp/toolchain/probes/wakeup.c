// wakeup: wakeup latency of a periodic sleeper while N CPU hogs run (cyclictest-like).
//   wakeup HOGS SECONDS [INTERVAL_US [NAME]]
// The hogs are child processes named "hog", so a policy can tell them from the sleeper
// ("probe-wakeup", or NAME: the task a policy says it favours, whose latency it answers for).
// Prints one JSON line: samples and latency percentiles in microseconds
// (how late the sleeper ran after its timer expired); max_us doubles as a starvation check.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int hogs = argc > 1 ? atoi(argv[1]) : 2;
	double seconds = argc > 2 ? atof(argv[2]) : 2;
	long interval_us = argc > 3 ? atol(argv[3]) : 1000;
	if (argc > 4)
		prctl(PR_SET_NAME, argv[4]);
	long max_samples = (long)(seconds * 1e6 / interval_us) + 16;
	long long *lat = calloc(max_samples, sizeof(*lat));
	pid_t children[256];
	for (int i = 0; i < hogs && i < 256; i++) {
		children[i] = fork();
		if (children[i] == 0) {
			prctl(PR_SET_NAME, "hog");
			for (;;)
				;
		}
	}

	struct timespec next, now;
	clock_gettime(CLOCK_MONOTONIC, &next);
	long long end = ns(next) + (long long)(seconds * 1e9), n = 0;
	while (n < max_samples) {
		next.tv_nsec += interval_us * 1000;
		while (next.tv_nsec >= 1000000000) { next.tv_nsec -= 1000000000; next.tv_sec++; }
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
		lat[n++] = ns(now) - ns(next);
		if (ns(now) >= end)
			break;
		// Missed periods are skipped, not caught up: each sample is one wakeup's lateness,
		// never the backlog of earlier ones.
		if (ns(now) > ns(next) + interval_us * 1000)
			next = now;
	}
	for (int i = 0; i < hogs && i < 256; i++) {
		kill(children[i], SIGKILL);
		waitpid(children[i], NULL, 0);
	}
	qsort(lat, n, sizeof(*lat), cmp);
#define P(q) (lat[(long)((q) * (n - 1))] / 1000.0)
	printf("{\"event\":\"probe\",\"probe\":\"wakeup\",\"hogs\":%d,\"samples\":%lld,\"p50_us\":%.1f,"
	       "\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n", hogs, n, P(0.5), P(0.9), P(0.99), P(1.0));
	return 0;
}
