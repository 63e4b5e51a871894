// forkstorm: fork and reap short-lived children for SECONDS; prints how many completed.
//   forkstorm SECONDS
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1;
	struct timespec start, now;
	long done = 0, failed = 0;
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, NULL, 0) < 0)
			failed++;
		else
			done++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	printf("{\"event\":\"probe\",\"probe\":\"forkstorm\",\"forks\":%ld,\"failed\":%ld}\n", done, failed);
	return failed != 0;
}
