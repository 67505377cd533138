"""A Workload API peer for the pinning tests: connects to the agent's socket itself (so the agent
pins *this* process), then relays bytes between that connection and one test client accepted on
a second socket, so the test can speak gRPC "as" this process.

    peer_pump.py connect AGENT_SOCKET FRONT_SOCKET EXEC_TARGET
        prints "ready", relays; on stdin:
          "exec\n": execs EXEC_TARGET (a copy of python) to keep relaying the same sockets,
                     which prints "execd" (the connecting process now runs another binary);
          "fork\n":  forks; the child keeps relaying, the parent execs EXEC_TARGET to only hold
                     the sockets, which prints "holding" (the connecting process runs another
                     binary, a process it forked uses the connection).
    peer_pump.py relay AGENT_FD FRONT_FD       (after exec) relays until either side closes
    peer_pump.py hold                          (after exec) sleeps until killed
Every mode exits after 120 s whatever happens, so a failed test leaves nothing running."""

import os
import select
import signal
import socket
import sys
import time

signal.alarm(120)


def say(word):
    sys.stdout.write(word + "\n")
    sys.stdout.flush()


def relay(agent_fd, front_fd, watch_stdin, exec_target):
    while True:
        watched = [agent_fd, front_fd] + ([0] if watch_stdin else [])
        ready, _, _ = select.select(watched, [], [])
        for fd in ready:
            if fd == 0:
                command = sys.stdin.readline().strip()
                for keep in (agent_fd, front_fd):
                    os.set_inheritable(keep, True)
                script = os.path.abspath(__file__)
                if command == "exec":
                    os.execv(exec_target,
                             [exec_target, script, "relay", str(agent_fd), str(front_fd)])
                if command == "fork":
                    if os.fork() == 0:
                        watch_stdin = False
                        continue
                    os.execv(exec_target, [exec_target, script, "hold"])
                if command == "":
                    watch_stdin = False
                continue
            data = os.read(fd, 65536)
            if not data:
                return
            other = front_fd if fd == agent_fd else agent_fd
            while data:
                data = data[os.write(other, data):]


def main():
    mode = sys.argv[1]
    if mode == "connect":
        agent_path, front_path, exec_target = sys.argv[2:5]
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        agent.connect(agent_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(front_path)
        listener.listen(1)
        say("ready")
        front, _ = listener.accept()
        listener.close()
        relay(agent.detach(), front.detach(), True, exec_target)
    elif mode == "relay":
        say("execd")
        relay(int(sys.argv[2]), int(sys.argv[3]), False, None)
    elif mode == "hold":
        say("holding")
        while True:
            time.sleep(1)


main()
