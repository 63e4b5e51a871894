# The sandbox VM's agent (runs as the VM's plan): takes commands from the host on the second
# serial port, one per line, and answers there, each line prefixed with "@<name> " so the
# host can tell whose it is. It lets a host-side program (the executor's sched_ext backend in
# tests) drive loaders inside the VM as it would on a real host.
#   chunk NAME BASE64   append to /tmp/NAME.b64      decode NAME   -> /tmp/NAME, "@NAME decoded"
#   start NAME ARGS...  run the loader on /tmp/NAME; its output lines come back as "@NAME ..."
#                       and its end as '@NAME {"event":"loader_exit","status":N}'
#   stop NAME           SIGTERM that loader          state         "@state STATE OPS"
#   quit                power off
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3<>/dev/ttyS1
echo "@ready $(cat /sys/kernel/sched_ext/state)" >&3
while read -r cmd name rest <&3; do
  case "$cmd" in
    chunk) echo "$rest" >> "/tmp/$name.b64" ;;
    decode) base64 -d "/tmp/$name.b64" > "/tmp/$name" && rm "/tmp/$name.b64" && echo "@$name decoded" >&3 ;;
    start)
      : > "/tmp/$name.out"
      ( /bin/schedcp-loader "/tmp/$name" $rest & echo $! > "/tmp/$name.pid"; wait $!
        echo "{\"event\":\"loader_exit\",\"status\":$?}" ) >> "/tmp/$name.out" 2>&1 &
      ( tail -n +1 -f "/tmp/$name.out" | while read -r line; do echo "@$name $line"; done >&3 ) & ;;
    stop) kill -TERM "$(cat "/tmp/$name.pid")" 2>/dev/null ;;
    state) echo "@state $(cat /sys/kernel/sched_ext/state) $(cat /sys/kernel/sched_ext/root/ops 2>/dev/null)" >&3 ;;
    quit) break ;;
  esac
done
