// makespan: JOBS CPU-bound jobs started at once, one of them LONG_FACTOR times longer than the
// others; how long until all are done (the batch long-tail case: a build with one big file).
//   makespan JOBS SHORT_MILLIONS LONG_FACTOR
// Each short job spins SHORT_MILLIONS million loop iterations; the long one LONG_FACTOR times
// that. Children are named "job-long" and "job-short". All are forked first and wait on a pipe,
// then start together when it closes, so none gets a head start from the fork order. Prints
// one JSON line: the makespan and when the long job and the last short job finished, in
// milliseconds since the start.
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void spin(long millions)
{
	// volatile: the compiler must not fold the loop away.
	for (volatile long i = 0; i < millions * 1000000L; i++)
		;
}

int main(int argc, char **argv)
{
	int jobs = argc > 1 ? atoi(argv[1]) : 40;
	long short_millions = argc > 2 ? atol(argv[2]) : 20;
	long long_factor = argc > 3 ? atol(argv[3]) : 30;
	if (jobs < 2 || jobs > 1024)
		return 2;
	int gate[2];
	if (pipe(gate) != 0)
		return 2;
	pid_t long_pid = 0;
	for (int i = 0; i < jobs; i++) {
		int is_long = i == jobs / 2;
		pid_t pid = fork();
		if (pid == 0) {
			char byte;
			close(gate[1]);
			prctl(PR_SET_NAME, is_long ? "job-long" : "job-short");
			if (read(gate[0], &byte, 1) < 0) // returns 0 (end of file) when the parent opens the gate
				_exit(3);
			spin(is_long ? short_millions * long_factor : short_millions);
			_exit(0);
		}
		if (is_long)
			long_pid = pid;
	}
	close(gate[0]);
	double start = now_ms();
	close(gate[1]);
	double long_done = 0, last_short = 0, end = 0;
	for (int i = 0; i < jobs; i++) {
		pid_t pid = wait(NULL);
		end = now_ms() - start;
		if (pid == long_pid)
			long_done = end;
		else
			last_short = end;
	}
	printf("{\"event\":\"probe\",\"probe\":\"makespan\",\"jobs\":%d,\"makespan_ms\":%.1f,"
	       "\"long_done_ms\":%.1f,\"last_short_done_ms\":%.1f}\n", jobs, end, long_done, last_short);
	return 0;
}
