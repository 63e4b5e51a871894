// fairness: N equal CPU hogs for SECONDS; prints each one's CPU time and min/max ratio, and
// the longest any of them went without the CPU: a hog is always runnable, so a gap between two
// turns of its loop is time it waited (its first turn counts from its creation).
//   fairness [-n NICED] HOGS SECONDS [NAME...]
// Hog i takes NAME[i % count] as its name (what a scheduler reads in p->comm), so a scheduler
// that treats some names worse (a system daemon's, or any but its own probe's) shows here: the
// verifier passes common daemons' names and random ones drawn for each verification.
// With -n, NICED more hogs run at nice 19, apart from the ratio and the longest wait (they are
// meant to get less; their least CPU time and longest wait are reported on their own):
// they are there to be starved by a scheduler that makes a light task, once it ran, wait a
// whole weighted turn behind the others, which the watchdog then sees.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_HOGS 256
#define NICEST 19

static volatile int stop;

struct hog {
	const char *name;
	int niced;
	double created;
	double cpu;
	double longest_wait;
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void *hog(void *arg)
{
	struct hog *h = arg;
	struct timespec t;
	if (h->name)
		pthread_setname_np(pthread_self(), h->name);
	if (h->niced) /* per thread on Linux: the thread's own id */
		setpriority(PRIO_PROCESS, gettid(), NICEST);
	double last = h->created;
	while (!stop) {
		double t_now = now();
		if (t_now - last > h->longest_wait)
			h->longest_wait = t_now - last;
		last = t_now;
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	h->cpu = t.tv_sec + t.tv_nsec / 1e9;
	return NULL;
}

int main(int argc, char **argv)
{
	int niced = 0;
	if (argc > 2 && strcmp(argv[1], "-n") == 0) {
		niced = atoi(argv[2]);
		argc -= 2;
		argv += 2;
	}
	int n = argc > 1 ? atoi(argv[1]) : 4;
	double seconds = argc > 2 ? atof(argv[2]) : 2;
	int names = argc > 3 ? argc - 3 : 0;
	if (n < 1 || n > MAX_HOGS)
		n = 4;
	if (niced < 0 || niced > MAX_HOGS - n)
		niced = 0;
	pthread_t threads[MAX_HOGS];
	struct hog hogs[MAX_HOGS] = {0};
	for (int i = 0; i < n + niced; i++) {
		hogs[i].name = names ? argv[3 + i % names] : NULL;
		hogs[i].niced = i >= n;
		hogs[i].created = now();
		pthread_create(&threads[i], NULL, hog, &hogs[i]);
	}
	usleep((useconds_t)(seconds * 1e6));
	stop = 1;
	double hi = 0, sum = 0, niced_min = 0, niced_wait = 0;
	int least = 0, waited = 0;
	for (int i = 0; i < n + niced; i++) {
		pthread_join(threads[i], NULL);
		if (hogs[i].niced) {
			niced_min = i == n || hogs[i].cpu < niced_min ? hogs[i].cpu : niced_min;
			niced_wait = hogs[i].longest_wait > niced_wait ? hogs[i].longest_wait : niced_wait;
			continue;
		}
		waited = hogs[i].longest_wait > hogs[waited].longest_wait ? i : waited;
		least = hogs[i].cpu < hogs[least].cpu ? i : least;
		hi = hogs[i].cpu > hi ? hogs[i].cpu : hi;
		sum += hogs[i].cpu;
	}
	printf("{\"event\":\"probe\",\"probe\":\"fairness\",\"hogs\":%d,\"cpu_s_total\":%.3f,\"cpu_s_min\":%.3f,"
	       "\"cpu_s_max\":%.3f,\"min_max_ratio\":%.3f,\"least_served\":\"%s\",\"niced\":%d,"
	       "\"niced_cpu_s_min\":%.3f,\"niced_longest_wait_s\":%.3f,\"longest_wait_s\":%.3f,"
	       "\"longest_waiter\":\"%s\"}\n",
	       n, sum, hogs[least].cpu, hi, hi > 0 ? hogs[least].cpu / hi : 0,
	       hogs[least].name ? hogs[least].name : "probe-fairness", niced, niced_min, niced_wait,
	       hogs[waited].longest_wait, hogs[waited].name ? hogs[waited].name : "probe-fairness");
	return 0;
}
