// schedcp-loader: load one sched_ext scheduler (.bpf.o), keep it enabled, report how it ended.
//
//   schedcp-loader OBJ [--param NAME=VALUE]... [--params-json FILE] [--watchdog-ms N]
//   schedcp-loader OBJ --trace
//
// Parameters are the object's `const volatile` globals (.rodata), set before load, so a
// library policy is reused with new parameters without recompiling. The loader prints one
// JSON object per line on stdout:
//   {"event":"enabled","ops":NAME,...}                   attached; the scheduler is running
//   {"event":"error","stage":STAGE,"error":MSG,"log":VERIFIER_LOG}   it could not get there
//   {"event":"exit","by":"signal"|"kernel","kind":N,"kind_name":S,"reason":S,"msg":S}
//   {"event":"prog_stats","progs":[{"name":S,"run_cnt":N,"run_time_ns":N},...]}   before an
//        unload, on request or after an ejection: each callback's calls and run time (counted
//        only while the kernel.bpf_stats_enabled sysctl is 1; zeros otherwise)
//   {"event":"attached","maps":{NAME:FD,...},"pid":N}   --trace: every program attached
// and holds until SIGTERM/SIGINT (then unloads) or until the kernel ejects the scheduler
// (watchdog, runtime error). --watchdog-ms lowers the scheduler's own timeout_ms (never raises
// it): the verifier's sandbox uses it so a starving scheduler is ejected within a short test.
// Nothing is pinned: the scheduler lives exactly as long as the loader. Exit status: 0 unloaded
// on request, 1 usage/setup error, 2 ejected by the kernel, 3 rejected at load.
//
// --trace holds an object of tracing programs instead (the observer's probes on hosts without
// BCC): each program attached where its SEC() says, and the maps' descriptors reported so the
// parent can copy them (pidfd_getfd) and read the maps while the loader holds the programs.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PARAMS 64
#define VERIFIER_LOG_SIZE (4 * 1024 * 1024)

// Must match struct schedcp_exit in policies/sched_ext/common.bpf.h.
struct schedcp_exit {
	int32_t kind;
	int64_t exit_code;
};

static volatile sig_atomic_t stop_requested;

// libbpf's own warnings (an extern kfunc the kernel lacks, a bad section...), reported with a
// load error when the kernel's verifier log is empty: that is where the reason is then.
static char libbpf_messages[16384];
static size_t libbpf_messages_len;

static int collect_libbpf_message(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || libbpf_messages_len >= sizeof(libbpf_messages) - 1)
		return 0;
	int n = vsnprintf(libbpf_messages + libbpf_messages_len, sizeof(libbpf_messages) - libbpf_messages_len,
			  fmt, ap);
	if (n > 0)
		libbpf_messages_len += (size_t)n < sizeof(libbpf_messages) - libbpf_messages_len
			? (size_t)n : sizeof(libbpf_messages) - libbpf_messages_len - 1;
	return 0;
}

static void on_signal(int sig) { (void)sig; stop_requested = 1; }

// JSON string escaping for messages and the verifier log.
static void print_json_string(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void report_error(const char *stage, const char *log, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("{\"event\":\"error\",\"stage\":\"%s\",\"error\":", stage);
	print_json_string(msg);
	if (log && *log) {
		fputs(",\"log\":", stdout);
		print_json_string(log);
	}
	puts("}");
	fflush(stdout);
}

static const char *exit_kind_name(int kind)
{
	// enum scx_exit_kind (kernel/sched/ext.c); the numbers are kernel ABI.
	switch (kind) {
	case 0: return "none";
	case 1: return "done";
	case 64: return "unregistered";
	case 65: return "unregistered_by_bpf";
	case 66: return "unregistered_by_kernel";
	case 67: return "sysrq";
	case 1024: return "error";
	case 1025: return "error_bpf";
	case 1026: return "error_stall";
	default: return "unknown";
	}
}

static struct bpf_map *find_map_by_suffix(struct bpf_object *obj, const char *suffix)
{
	struct bpf_map *map;
	size_t n = strlen(suffix);
	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);
		size_t len = strlen(name);
		if (len >= n && strcmp(name + len - n, suffix) == 0)
			return map;
	}
	return NULL;
}

// Set one `const volatile` global in .rodata. Integers and bools by value; char arrays from a
// string (NUL-padded, must fit).
static int set_param(struct bpf_object *obj, const char *name, const char *value)
{
	struct bpf_map *rodata = find_map_by_suffix(obj, ".rodata");
	struct btf *btf = bpf_object__btf(obj);
	if (!rodata || !btf) {
		report_error("params", NULL, "the object has no parameters (.rodata), so %s cannot be set", name);
		return -1;
	}
	int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	size_t size = 0;
	char *data = bpf_map__initial_value(rodata, &size);
	if (sec_id < 0 || !data) {
		report_error("params", NULL, "cannot read the parameter layout (.rodata BTF)");
		return -1;
	}
	const struct btf_type *sec = btf__type_by_id(btf, sec_id);
	const struct btf_var_secinfo *vs = btf_var_secinfos(sec);
	for (int i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);
		if (strcmp(btf__name_by_offset(btf, var->name_off), name) != 0)
			continue;
		const struct btf_type *t = btf__type_by_id(btf, btf__resolve_type(btf, var->type));
		char *dst = data + vs->offset;
		if (btf_is_array(t) && btf__resolve_size(btf, btf_array(t)->type) > 1) {
			// An array of integers: comma-separated values, the rest zero.
			int elem = (int)btf__resolve_size(btf, btf_array(t)->type);
			unsigned int count = btf_array(t)->nelems, i = 0;
			memset(dst, 0, vs->size);
			if (elem != 2 && elem != 4 && elem != 8) {
				report_error("params", NULL, "%s: arrays of %d-byte elements are not supported", name, elem);
				return -1;
			}
			char copy[1024];
			snprintf(copy, sizeof(copy), "%s", value);
			for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ","), i++) {
				char *end = NULL;
				errno = 0;
				long long v = strtoll(tok, &end, 0);
				if (i >= count || errno || end == tok || *end) {
					report_error("params", NULL, "%s takes up to %u comma-separated numbers", name, count);
					return -1;
				}
				if (elem == 2)
					((int16_t *)dst)[i] = (int16_t)v;
				else if (elem == 4)
					((int32_t *)dst)[i] = (int32_t)v;
				else
					((int64_t *)dst)[i] = (int64_t)v;
			}
			return 0;
		}
		if (btf_is_array(t)) {
			size_t len = strlen(value);
			if (len >= vs->size) {
				report_error("params", NULL, "%s is at most %u characters, got %zu", name,
					     vs->size - 1, len);
				return -1;
			}
			memset(dst, 0, vs->size);
			memcpy(dst, value, len);
			return 0;
		}
		char *end = NULL;
		errno = 0;
		long long v = strcmp(value, "true") == 0 ? 1 : strcmp(value, "false") == 0 ? 0
			      : strtoll(value, &end, 0);
		if (errno || (end && (end == value || *end))) {
			report_error("params", NULL, "%s=%s is not a number", name, value);
			return -1;
		}
		switch (vs->size) {
		case 1: *(int8_t *)dst = (int8_t)v; break;
		case 2: *(int16_t *)dst = (int16_t)v; break;
		case 4: *(int32_t *)dst = (int32_t)v; break;
		case 8: *(int64_t *)dst = (int64_t)v; break;
		default:
			report_error("params", NULL, "%s has an unsupported size %u", name, vs->size);
			return -1;
		}
		return 0;
	}
	report_error("params", NULL, "the scheduler has no parameter named %s", name);
	return -1;
}

// The scheduler's struct_ops map (SEC(".struct_ops.link")); NULL unless there is exactly one,
// so what a review or the static checks read is what gets attached.
static struct bpf_map *find_ops_map(struct bpf_object *obj)
{
	struct bpf_map *map, *ops = NULL;
	int count = 0;
	bpf_object__for_each_map(map, obj) {
		if (bpf_map__type(map) == BPF_MAP_TYPE_STRUCT_OPS) {
			ops = map;
			count++;
		}
	}
	return count == 1 ? ops : NULL;
}

// Lower sched_ext_ops.timeout_ms to at most `limit_ms` before load. The member is found by
// name in the object's BTF; 0 (unset) means the kernel's default of 30 s, so it is lowered too.
static int cap_watchdog(struct bpf_object *obj, const char *value)
{
	char *end = NULL;
	long limit_ms = strtol(value, &end, 10);
	if (end == value || *end || limit_ms < 1 || limit_ms > 30000) {
		report_error("params", NULL, "--watchdog-ms wants 1..30000, got %s", value);
		return -1;
	}
	struct bpf_map *ops = find_ops_map(obj);
	struct btf *btf = bpf_object__btf(obj);
	size_t size = 0;
	char *data = ops ? bpf_map__initial_value(ops, &size) : NULL;
	if (!data || !btf) {
		report_error("params", NULL, "--watchdog-ms: the object has no readable sched_ext_ops");
		return -1;
	}
	const struct btf_type *t = btf__type_by_id(btf, btf__resolve_type(btf, bpf_map__btf_value_type_id(ops)));
	const struct btf_member *m = t && btf_is_struct(t) ? btf_members(t) : NULL;
	for (int i = 0; m && i < btf_vlen(t); i++, m++) {
		size_t off = btf_member_bit_offset(t, i) / 8;
		if (strcmp(btf__name_by_offset(btf, m->name_off), "timeout_ms") != 0 || off + 4 > size)
			continue;
		uint32_t *timeout = (uint32_t *)(data + off);
		if (*timeout == 0 || *timeout > (uint32_t)limit_ms)
			*timeout = (uint32_t)limit_ms;
		return 0;
	}
	report_error("params", NULL, "--watchdog-ms: sched_ext_ops has no timeout_ms member");
	return -1;
}

// --params-json FILE: a flat object of "name": number | true | false | "string". Parsed by
// hand (no JSON library in the VM): keys and values may not contain quotes or commas.
static int set_params_json(struct bpf_object *obj, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		report_error("params", NULL, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = buf;
	while ((p = strchr(p, '"'))) {
		char *key = ++p, *kend = strchr(p, '"');
		if (!kend)
			break;
		*kend = 0;
		p = strchr(kend + 1, ':');
		if (!p)
			break;
		p++;
		while (*p == ' ' || *p == '\n' || *p == '\t')
			p++;
		char *value = p, *vend;
		if (*p == '"') {
			value = ++p;
			vend = strchr(p, '"');
		} else {
			vend = p + strcspn(p, ",}\r\n ");
		}
		if (!vend)
			break;
		char saved = *vend;
		*vend = 0;
		if (set_param(obj, key, value))
			return -1;
		p = vend + (saved ? 1 : 0);
	}
	return 0;
}

// The policy's exit record (`schedcp_exit_info` in .bss, written by SCHEDCP_RECORD_EXIT), found
// by name through BTF; NULL when the program has none (then only sysfs tells of an ejection).
static const volatile struct schedcp_exit *find_exit_record(struct bpf_object *obj)
{
	struct bpf_map *bss = find_map_by_suffix(obj, ".bss");
	struct btf *btf = bpf_object__btf(obj);
	size_t size = 0;
	char *data = bss ? bpf_map__initial_value(bss, &size) : NULL;
	int sec_id = btf ? btf__find_by_name_kind(btf, ".bss", BTF_KIND_DATASEC) : -1;
	if (!data || sec_id < 0)
		return NULL;
	const struct btf_type *sec = btf__type_by_id(btf, sec_id);
	const struct btf_var_secinfo *vs = btf_var_secinfos(sec);
	for (int i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);
		if (strcmp(btf__name_by_offset(btf, var->name_off), "schedcp_exit_info") == 0 &&
		    vs->size == sizeof(struct schedcp_exit) && vs->offset + vs->size <= size)
			return (const volatile struct schedcp_exit *)(data + vs->offset);
	}
	return NULL;
}

static void read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	buf[0] = 0;
	if (!f)
		return;
	if (fgets(buf, (int)size, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

// How long to wait for the kernel's account of a scheduler's end (the exit record ops.exit
// writes, the log lines): it comes from the disable work item, which a busy machine (an
// emulated VM on a loaded host, seen in CI) can run well after sysfs stops saying enabled.
#define EXIT_ACCOUNT_WAIT_MS 2000

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

// The kernel says why a scheduler went in its log: `sched_ext: BPF scheduler "NAME" disabled
// (REASON)` and, for errors, `sched_ext: NAME: MSG`. Reading them there (rather than having
// the program copy strings out of kernel memory) keeps probe_read helpers out of policies.
static int kmsg_fd = -1;

static void kmsg_open_at_end(void)
{
	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (kmsg_fd >= 0)
		lseek(kmsg_fd, 0, SEEK_END);
}

static void kmsg_exit_reason(const char *ops, char *reason, size_t rsize, char *msg, size_t msize)
{
	char record[2048], prefix[160];
	snprintf(prefix, sizeof(prefix), "sched_ext: %s: ", ops);
	reason[0] = msg[0] = 0;
	for (int tries = 0; kmsg_fd >= 0 && tries < EXIT_ACCOUNT_WAIT_MS / 10 && !reason[0]; tries++) {
		ssize_t n;
		while ((n = read(kmsg_fd, record, sizeof(record) - 1)) > 0 || (n < 0 && errno == EPIPE)) {
			if (n <= 0)
				continue; // EPIPE: records were overwritten; the next read goes on
			record[n] = 0;
			char *text = strchr(record, ';');
			if (!text)
				continue;
			text++;
			text[strcspn(text, "\n")] = 0;
			char *open = strstr(text, "\" disabled (");
			if (strncmp(text, "sched_ext: BPF scheduler \"", 26) == 0 && open) {
				snprintf(reason, rsize, "%s", open + 12);
				reason[strcspn(reason, ")")] = 0;
			} else if (!msg[0] && strncmp(text, prefix, strlen(prefix)) == 0) {
				snprintf(msg, msize, "%s", text + strlen(prefix));
			}
		}
		if (!reason[0])
			sleep_ms(10);
	}
}

static void print_exit(const volatile struct schedcp_exit *e, const char *ops, const char *by)
{
	char reason[256], msg[512];
	kmsg_exit_reason(ops, reason, sizeof(reason), msg, sizeof(msg));
	int kind = e ? e->kind : -1;
	printf("{\"event\":\"exit\",\"by\":\"%s\",\"kind\":%d,\"kind_name\":\"%s\",\"exit_code\":%lld,"
	       "\"reason\":", by, kind, e ? exit_kind_name(kind) : "unknown (no exit record)",
	       (long long)(e ? e->exit_code : 0));
	print_json_string(reason);
	fputs(",\"msg\":", stdout);
	print_json_string(msg);
	puts("}");
	fflush(stdout);
}


// Each struct_ops callback's run count and time as the kernel counts them (bpf_stats): what a
// scheduler's callbacks cost, read before the programs go away with the object.
static void print_prog_stats(struct bpf_object *obj)
{
	struct bpf_program *prog;
	const char *sep = "";

	printf("{\"event\":\"prog_stats\",\"progs\":[");
	bpf_object__for_each_program(prog, obj) {
		struct bpf_prog_info info = {0};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);

		if (fd < 0 || bpf_prog_get_info_by_fd(fd, &info, &len))
			continue;
		printf("%s{\"name\":", sep);
		print_json_string(bpf_program__name(prog));
		printf(",\"run_cnt\":%llu,\"run_time_ns\":%llu}", (unsigned long long)info.run_cnt,
		       (unsigned long long)info.run_time_ns);
		sep = ",";
	}
	printf("]}\n");
	fflush(stdout);
}

// --trace: attach every program of the object and hold them until asked to stop.
static int hold_tracing(struct bpf_object *obj)
{
	struct bpf_link *links[64];
	int count = 0;
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj) {
		struct bpf_link *link = count < 64 ? bpf_program__attach(prog) : NULL;
		if (!link) {
			report_error("attach", libbpf_messages, "attaching %s failed: %s", bpf_program__name(prog),
				     count < 64 ? strerror(errno) : "more than 64 programs");
			while (count)
				bpf_link__destroy(links[--count]);
			return 3;
		}
		links[count++] = link;
	}
	struct bpf_map *map;
	const char *sep = "";
	printf("{\"event\":\"attached\",\"maps\":{");
	bpf_object__for_each_map(map, obj) {
		printf("%s", sep);
		print_json_string(bpf_map__name(map));
		printf(":%d", bpf_map__fd(map));
		sep = ",";
	}
	printf("},\"pid\":%d}\n", getpid());
	fflush(stdout);
	while (!stop_requested)
		sleep_ms(100);
	while (count)
		bpf_link__destroy(links[--count]);
	bpf_object__close(obj);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0) {
		fprintf(stderr, "usage: %s OBJ.bpf.o [--param NAME=VALUE]... [--params-json FILE] [--watchdog-ms N]\n"
			"       %s OBJ.bpf.o --trace\n", argv[0], argv[0]);
		return 1;
	}
	// Log level 0 with a buffer: libbpf loads without a log first and, only if the kernel
	// refuses, loads again at level 1 into the buffer for the reason. Asking for the log up
	// front would make the kernel refuse a correct program whose log overflowed (ENOSPC).
	static char log_buf[VERIFIER_LOG_SIZE];
	libbpf_set_print(collect_libbpf_message);
	LIBBPF_OPTS(bpf_object_open_opts, opts, .kernel_log_buf = log_buf, .kernel_log_size = sizeof(log_buf),
		    .kernel_log_level = 0);
	struct bpf_object *obj = bpf_object__open_file(argv[1], &opts);
	if (!obj) {
		report_error("open", NULL, "cannot open %s: %s", argv[1], strerror(errno));
		return 1;
	}
	bool trace = false;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--trace") == 0) {
			trace = true;
		} else if (strcmp(argv[i], "--param") == 0 && i + 1 < argc) {
			char *eq = strchr(argv[++i], '=');
			if (!eq) {
				report_error("params", NULL, "--param wants NAME=VALUE, got %s", argv[i]);
				return 1;
			}
			*eq = 0;
			if (set_param(obj, argv[i], eq + 1))
				return 1;
		} else if (strcmp(argv[i], "--params-json") == 0 && i + 1 < argc) {
			if (set_params_json(obj, argv[++i]))
				return 1;
		} else if (strcmp(argv[i], "--watchdog-ms") == 0 && i + 1 < argc) {
			if (cap_watchdog(obj, argv[++i]))
				return 1;
		} else {
			report_error("usage", NULL, "unknown argument %s", argv[i]);
			return 1;
		}
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	// The scheduler must not outlive whoever supervises it (the executor): if the parent
	// dies, SIGTERM detaches the scheduler and the kernel goes back to the fair class.
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	kmsg_open_at_end();
	int err = bpf_object__load(obj);
	if (err) {
		report_error("load", log_buf[0] ? log_buf : libbpf_messages, "the kernel refused the program: %s",
			     strerror(-err));
		return 3;
	}
	if (trace)
		return hold_tracing(obj);
	struct bpf_map *ops = find_ops_map(obj);
	if (!ops) {
		report_error("attach", NULL, "%s must define exactly one sched_ext_ops in SEC(\".struct_ops.link\")", argv[1]);
		return 1;
	}
	struct bpf_link *link = bpf_map__attach_struct_ops(ops);
	if (!link) {
		report_error("attach", libbpf_messages, "attaching the scheduler failed: %s", strerror(errno));
		return 3;
	}
	const volatile struct schedcp_exit *exit_info = find_exit_record(obj);
	const char *ops_name = bpf_map__name(ops);

	// Since 6.12 a scheduler whose ops.init fails still attaches: the kernel records the
	// error through ops.exit and stays disabled. Wait for the outcome before saying enabled.
	char state[32], name[128];
	for (int i = 0; i < 100; i++) {
		read_file("/sys/kernel/sched_ext/state", state, sizeof(state));
		if (strcmp(state, "enabling") != 0)
			break;
		sleep_ms(10);
	}
	read_file("/sys/kernel/sched_ext/root/ops", name, sizeof(name));
	if (strcmp(state, "enabled") != 0 || (exit_info && exit_info->kind)) {
		// An error while enabling leaves "disabling" before ops.exit has run.
		for (int i = 0; i < EXIT_ACCOUNT_WAIT_MS / 10 && exit_info && !exit_info->kind; i++)
			sleep_ms(10);
		print_exit(exit_info, name[0] ? name : ops_name, "kernel");
		report_error("enable", libbpf_messages, "the scheduler did not enable (sched_ext state: %s)", state);
		bpf_link__destroy(link);
		return 3;
	}
	printf("{\"event\":\"enabled\",\"ops\":");
	print_json_string(name);
	printf(",\"state\":\"%s\",\"pid\":%d}\n", state, getpid());
	fflush(stdout);

	// Hold. The kernel ejected the scheduler if sysfs no longer says enabled, or if ops.exit
	// recorded a kind while we were not asking it to go (a scheduler without the record is
	// still caught by the first test).
	while (!stop_requested) {
		read_file("/sys/kernel/sched_ext/state", state, sizeof(state));
		if (strcmp(state, "enabled") != 0 || (exit_info && exit_info->kind)) {
			for (int i = 0; i < EXIT_ACCOUNT_WAIT_MS / 5 && exit_info && !exit_info->kind; i++)
				sleep_ms(5);
			print_exit(exit_info, name, "kernel");
			// What the callbacks cost until then: a costly one is often why it stalled.
			print_prog_stats(obj);
			bpf_link__destroy(link);
			return 2;
		}
		sleep_ms(50);
	}
	print_prog_stats(obj);
	bpf_link__destroy(link);
	for (int i = 0; i < EXIT_ACCOUNT_WAIT_MS / 5 && exit_info && !exit_info->kind; i++)
		sleep_ms(5);
	print_exit(exit_info, name, "signal");
	bpf_object__close(obj);
	return 0;
}
