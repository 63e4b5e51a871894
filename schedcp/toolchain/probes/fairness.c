// fairness: N equal CPU hogs for SECONDS; prints each one's CPU time and min/max ratio.
//   fairness HOGS SECONDS
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;

static void *hog(void *arg)
{
	double *cpu = arg;
	struct timespec t;
	while (!stop)
		;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	*cpu = t.tv_sec + t.tv_nsec / 1e9;
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4;
	double seconds = argc > 2 ? atof(argv[2]) : 2;
	if (n < 1 || n > 256)
		n = 4;
	pthread_t threads[256];
	double cpu[256] = {0};
	for (int i = 0; i < n; i++)
		pthread_create(&threads[i], NULL, hog, &cpu[i]);
	usleep((useconds_t)(seconds * 1e6));
	stop = 1;
	double lo = 1e9, hi = 0, sum = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(threads[i], NULL);
		lo = cpu[i] < lo ? cpu[i] : lo;
		hi = cpu[i] > hi ? cpu[i] : hi;
		sum += cpu[i];
	}
	printf("{\"event\":\"probe\",\"probe\":\"fairness\",\"hogs\":%d,\"cpu_s_total\":%.3f,\"cpu_s_min\":%.3f,"
	       "\"cpu_s_max\":%.3f,\"min_max_ratio\":%.3f}\n", n, sum, lo, hi, hi > 0 ? lo / hi : 0);
	return 0;
}
