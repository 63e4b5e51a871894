// reqwork: a request/worker service in miniature, for response-time percentiles under load.
//   reqwork SECONDS RATE WORK_US [WORKERS]
// A dispatcher thread issues RATE requests a second on a fixed schedule; each goes on a queue
// and wakes one of WORKERS worker threads (condition variable), which computes for WORK_US
// microseconds and completes it. Response time = completion - the request's scheduled time, so
// a late dispatcher counts too (no coordinated omission). All threads are named "reqwork".
// Prints one JSON line: requests, p50/p99/p99.9/max response time in microseconds.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

#define QUEUE 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static long long queue[QUEUE];
static long head, tail, done_count, total;
static int finished;
static long long *response;
static long work_us;

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *worker(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "reqwork");
	for (;;) {
		pthread_mutex_lock(&lock);
		while (head == tail && !finished)
			pthread_cond_wait(&ready, &lock);
		if (head == tail) {
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		long long scheduled = queue[head++ % QUEUE];
		pthread_mutex_unlock(&lock);
		long long until = now_ns() + work_us * 1000;
		while (now_ns() < until)
			;
		long long took = now_ns() - scheduled;
		pthread_mutex_lock(&lock);
		if (done_count < total)
			response[done_count++] = took;
		pthread_mutex_unlock(&lock);
	}
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	long rate = argc > 2 ? atol(argv[2]) : 1000;
	work_us = argc > 3 ? atol(argv[3]) : 50;
	int workers = argc > 4 ? atoi(argv[4]) : 2;
	if (rate < 1 || workers < 1 || workers > 64)
		return 2;
	prctl(PR_SET_NAME, "reqwork");
	total = (long)(seconds * rate);
	response = calloc(total + 1, sizeof(*response));
	pthread_t threads[64];
	for (int i = 0; i < workers; i++)
		pthread_create(&threads[i], NULL, worker, NULL);
	long long start = now_ns() + 1000000, period = 1000000000LL / rate;
	for (long i = 0; i < total; i++) {
		long long at = start + i * period;
		struct timespec t = {at / 1000000000LL, at % 1000000000LL};
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
		pthread_mutex_lock(&lock);
		if (tail - head < QUEUE)
			queue[tail++ % QUEUE] = at;
		pthread_cond_signal(&ready);
		pthread_mutex_unlock(&lock);
	}
	pthread_mutex_lock(&lock);
	finished = 1;
	pthread_cond_broadcast(&ready);
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < workers; i++)
		pthread_join(threads[i], NULL);
	long n = done_count;
	qsort(response, n, sizeof(*response), cmp);
#define P(q) (n ? response[(long)((q) * (n - 1))] / 1000.0 : 0)
	printf("{\"requests\":%ld,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
	       n, P(0.5), P(0.99), P(0.999), P(1.0));
	return 0;
}
