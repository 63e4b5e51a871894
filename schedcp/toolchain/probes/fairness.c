// fairness: N equal CPU hogs for SECONDS; prints each one's CPU time and min/max ratio.
//   fairness HOGS SECONDS [NAME...]
// Hog i takes NAME[i % count] as its name (what a scheduler reads in p->comm), so a scheduler
// that treats some names worse (a system daemon's, or any but its own probe's) shows here: the
// verifier passes common daemons' names and random ones drawn for each verification.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;

struct hog {
	const char *name;
	double cpu;
};

static void *hog(void *arg)
{
	struct hog *h = arg;
	struct timespec t;
	if (h->name)
		pthread_setname_np(pthread_self(), h->name);
	while (!stop)
		;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	h->cpu = t.tv_sec + t.tv_nsec / 1e9;
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4;
	double seconds = argc > 2 ? atof(argv[2]) : 2;
	int names = argc > 3 ? argc - 3 : 0;
	if (n < 1 || n > 256)
		n = 4;
	pthread_t threads[256];
	struct hog hogs[256] = {0};
	for (int i = 0; i < n; i++) {
		hogs[i].name = names ? argv[3 + i % names] : NULL;
		pthread_create(&threads[i], NULL, hog, &hogs[i]);
	}
	usleep((useconds_t)(seconds * 1e6));
	stop = 1;
	double hi = 0, sum = 0;
	int least = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(threads[i], NULL);
		least = hogs[i].cpu < hogs[least].cpu ? i : least;
		hi = hogs[i].cpu > hi ? hogs[i].cpu : hi;
		sum += hogs[i].cpu;
	}
	printf("{\"event\":\"probe\",\"probe\":\"fairness\",\"hogs\":%d,\"cpu_s_total\":%.3f,\"cpu_s_min\":%.3f,"
	       "\"cpu_s_max\":%.3f,\"min_max_ratio\":%.3f,\"least_served\":\"%s\"}\n", n, sum, hogs[least].cpu, hi,
	       hi > 0 ? hogs[least].cpu / hi : 0, hogs[least].name ? hogs[least].name : "probe-fairness");
	return 0;
}
