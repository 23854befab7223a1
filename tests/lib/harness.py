"""What the end-to-end suites (alerts, dashboards, HA, scale) share: loopback ports, bounded
waits, and the processes, threads, Docker containers and images of one run, all ended by
Run.stop().

Each suite puts this directory on sys.path and imports it as `harness`.
"""

import os
import pathlib
import random
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time

import requests


def free_port():
    """A TCP port on 127.0.0.1 that is free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def suffix(n=6):
    """Random lowercase letters and digits, so that a run's nodes, containers and images do
    not meet another run's."""
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def wait_for(what, predicate, timeout, every=0.5, check=None, tolerate=()):
    """Polls predicate() until it returns something truthy, for at most timeout seconds, and
    returns that. check(), when given, runs before each poll (it raises when a process the wait
    depends on has died); exceptions of the types in tolerate count as "not yet"."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if check:
            check()
        try:
            result = predicate()
        except tolerate as e:
            result, last = None, e
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f" (last: {last})" if last is not None else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(every)


def answers_200(url):
    """Whether url answers 200 within 2 s."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_ready(url, what, alive, timeout=60):
    """Polls url until it answers 200; alive() raises if the process died meanwhile."""
    wait_for(f"{what} ready at {url}", lambda: answers_200(url), timeout, every=0.3, check=alive)


class Run:
    """The children of one run, each in a session of its own with its output in
    tmp/<name>.log, and the helper threads, Docker containers and images it started; stop()
    ends them all, the newest first, and removes tmp unless keep is set."""

    def __init__(self, prefix, keep, log):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
        self.keep, self.log = keep, log
        self.procs = {}
        self.stop_event = threading.Event()
        self.threads, self.containers, self.images = [], [], []
        self.id = suffix()
        self.stopped = False

    # -- processes ------------------------------------------------------------------------------

    def spawn(self, name, argv, env=None):
        """Starts argv as name (a name of a process that has ended may be used again; its log
        goes on)."""
        with open(self.tmp / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def tail(self, name, lines=25):
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, *names):
        """Raises, with the end of its log, when one of names (all when none are given) has
        exited."""
        for name in names or list(self.procs):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def kill(self, name, sig=signal.SIGTERM, timeout=20):
        """Sends sig to name and waits for it to end (its whole process group gets SIGKILL
        after timeout seconds); it is no longer one of the run's processes."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        _reap(proc, timeout)

    def thread(self, target, *args):
        """Runs target(*args) on a daemon thread, joined by stop() after stop_event is set."""
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)
        procs = list(reversed(self.procs.values()))
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _reap(proc, 20)
        self.procs.clear()
        for c in self.containers:
            subprocess.run(["docker", "rm", "-f", c], capture_output=True, timeout=60)
        for i in self.images:
            subprocess.run(["docker", "rmi", "-f", i], capture_output=True, timeout=60)
        if self.keep:
            self.log(f"kept logs and data in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- parts ----------------------------------------------------------------------------------

    def start_hub(self, bin_dir, name="hub", listen="127.0.0.1:0", args=(), enroll_token=None):
        """Starts bin_dir/fleetgate-hub as name, its data in tmp/<name> (kept across restarts),
        and returns its address once it has written listen.addr. enroll_token, when given, is
        its enrollment token instead of one it generates."""
        data = self.tmp / name
        data.mkdir(exist_ok=True)
        token = data / "enroll.token"
        if enroll_token is not None and not token.exists():
            token.write_text(enroll_token + "\n")
            token.chmod(0o600)
        addr_file = data / "listen.addr"
        addr_file.unlink(missing_ok=True)
        self.spawn(name, [str(bin_dir / "fleetgate-hub"), "--listen", listen,
                          "--data-dir", str(data), *args])
        return wait_for(f"{name}'s listen.addr",
                        lambda: addr_file.exists() and addr_file.read_text().strip(), 30,
                        every=0.05, check=lambda: self.check_alive(name))

    def busybox_image(self, repository, applets, dirs=()):
        """Imports a Docker image `repository:<run id>` holding the static /bin/busybox with
        applets linked to it (and the empty dirs), from a tarball: there is no registry here.
        stop() removes it."""
        root = self.tmp / f"{repository}-root"
        (root / "bin").mkdir(parents=True)
        for d in dirs:
            (root / d).mkdir()
        shutil.copy("/bin/busybox", root / "bin" / "busybox")
        for applet in applets:
            os.symlink("busybox", root / "bin" / applet)
        tar = self.tmp / f"{repository}.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
        image = f"{repository}:{self.id}"
        subprocess.run(["docker", "import", str(tar), image], check=True, capture_output=True,
                       timeout=120)
        self.images.append(image)
        return image


def _reap(proc, timeout):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
