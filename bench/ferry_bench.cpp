// ferry's benchmark (see shared bench.md for the workloads). Each figure is the median of several runs
// after a warm-up, with min and max, printed beside the floor measured in the same run: a plain Asio TCP
// ping-pong between two processes on 127.0.0.1 (and the same over a Unix socket, for comparison), and for
// large payloads, 64 MiB moved from one process to another over a Unix socket and through shared memory.
//
//   ferry_bench [--runs N] [--out FILE] [--only W1,W2,...] [--w8-calls N] [--embedded-once]
//   ferry_bench --curves DIR      scale curves instead: cost against callers, map size, payload size and the
//                                 number of functions deployed
//
// docs/benchmarks.md says what each workload does and what bounds it.
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ferry/ferry.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

ferry::App app{"bench"};
// The throughput workloads (W2-W4) keep many small inputs in flight: up to 256 per container, in two
// containers (one per core). W1 is sequential, so the options do not change it.
auto double_it =
    app.function("double_it", [](std::int64_t x) { return 2 * x; }, {.max_inputs = 256, .max_containers = 2});

ferry::Task<std::int64_t> sleep_100ms(std::int64_t x) {
  co_await ferry::sleep(std::chrono::milliseconds(100));
  co_return x;
}
auto async_sleep = app.function("sleep_100ms", sleep_100ms, {.max_inputs = 1000, .max_containers = 1});

auto tree_add = app.function("tree_add", [](std::int64_t a, std::int64_t b) { return a + b; },
                             {.max_inputs = 256, .max_containers = 2});

/// W8: spawned calls drained by two containers.
auto spawned_double =
    app.function("spawned_double", [](std::int64_t x) { return 2 * x; }, {.max_inputs = 64, .max_containers = 2});
/// W8's size (bench.md's 1,000,000; `--w8-calls N` changes it, for profiling).
std::int64_t w8_calls = 1'000'000;

/// W9: a byte string there and back.
auto echo_bytes = app.function("echo_bytes", [](ferry::bytes b) { return b; });

/// W7: count(n) tail-calls count(n - 1) until 0.
ferry::Future<std::int64_t> count_body(std::int64_t n);
auto count_fn = app.function("count", count_body);
ferry::Future<std::int64_t> count_body(std::int64_t n) {
  if (n == 0) return double_it.future(0);
  return count_fn.future(n - 1);
}

/// The functions curve: a copy of this binary run with BENCH_DEPLOYED_FUNCTIONS=N declares N more functions,
/// f0 ... f<N-1>, all deployed by its app.main; so do its containers, which inherit the variable (a FERRY_
/// one they would not: the server keeps its own settings from them).
std::vector<ferry::Function<std::int64_t(std::int64_t)>> declare_counted_functions() {
  std::vector<ferry::Function<std::int64_t(std::int64_t)>> declared;
  const char* count = std::getenv("BENCH_DEPLOYED_FUNCTIONS");
  for (int i = 0, n = count ? std::atoi(count) : 0; i < n; ++i) {
    declared.push_back(app.function("f" + std::to_string(i), [](std::int64_t x) { return 2 * x; },
                                    {.max_inputs = 256, .max_containers = 1}));
  }
  return declared;
}
auto counted_functions = declare_counted_functions();

namespace {

struct stats {
  double median, min, max;
};

stats summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

// --- CPU time of every process involved (caller, server, containers), from /proc ---

double process_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  const auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close_paren + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) {
      stime = std::stod(field);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "children");
    pid_t child;
    while (in >> child) out.push_back(child);
  }
  return out;
}

/// The processes a workload runs on: this one (the caller, and the embedded server), the standalone
/// server when there is one, and the containers (children of the server).
std::vector<pid_t> workload_processes(const std::vector<pid_t>& other_processes) {
  std::vector<pid_t> roots = other_processes;
  roots.push_back(::getpid());
  std::set<pid_t> all(roots.begin(), roots.end());
  for (pid_t root : roots) {
    for (pid_t child : children_of(root)) all.insert(child);
  }
  return {all.begin(), all.end()};
}

/// CPU seconds used so far by the workload's processes.
double cpu_seconds(const std::vector<pid_t>& other_processes) {
  double total = 0;
  for (pid_t pid : workload_processes(other_processes)) total += process_cpu_seconds(pid);
  return total;
}

// --- the floor: Asio ping-pong between two processes, over TCP on 127.0.0.1 and over a Unix socket ---

struct floor_result {
  double rtt_p50_us;       // TCP
  double unix_rtt_p50_us;  // the same ping-pong over a Unix socket
  double pipelined_per_s;  // TCP
};

/// The child's side: answers each complete 32-byte request with 8 bytes (pipelining sends many at once),
/// until the peer closes.
template <class Socket>
[[noreturn]] void echo_requests(Socket& s) {
  std::vector<char> req(32 * 128);
  const char reply[8 * 128] = {};
  boost::system::error_code ec;
  std::size_t partial = 0;
  for (;;) {
    const std::size_t n = s.read_some(asio::buffer(req), ec);
    if (ec) break;
    const std::size_t total = partial + n;
    const std::size_t complete = total / 32;
    partial = total % 32;
    if (complete) asio::write(s, asio::buffer(reply, complete * 8), ec);
    if (ec) break;
  }
  ::_exit(0);
}

/// The median round trip of `round_trips` 32-byte requests answered with 8 bytes, after 200 to warm up.
template <class Socket>
double ping_pong_p50_us(Socket& s, int round_trips) {
  char req[32] = {1};
  char reply[8];
  std::vector<double> rtts;
  for (int i = 0; i < round_trips + 200; ++i) {
    const auto t0 = clock_type::now();
    asio::write(s, asio::buffer(req));
    asio::read(s, asio::buffer(reply));
    if (i >= 200) rtts.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  return percentile(rtts, 0.5);
}

/// The Unix socket's round trip: whether a container's hop would gain from one instead of TCP here.
double unix_socket_rtt_us(int round_trips) {
  using unix_socket = asio::local::stream_protocol;
  char dir_template[] = "/tmp/ferry-bench-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(dir_template);
  const std::string path = (dir / "floor.sock").string();
  asio::io_context io;
  unix_socket::acceptor acceptor(io, unix_socket::endpoint(path));
  const pid_t child = ::fork();
  if (child == 0) {
    unix_socket::socket s = acceptor.accept();
    echo_requests(s);
  }
  acceptor.close();
  unix_socket::socket s(io);
  s.connect(unix_socket::endpoint(path));
  const double p50 = ping_pong_p50_us(s, round_trips);
  s.close();
  ::waitpid(child, nullptr, 0);
  std::filesystem::remove_all(dir);
  return p50;
}

floor_result measure_floor(int round_trips) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  const pid_t child = ::fork();
  if (child == 0) {
    tcp::socket s = acceptor.accept();
    s.set_option(tcp::no_delay(true));
    echo_requests(s);
  }
  acceptor.close();
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  s.set_option(tcp::no_delay(true));
  const double rtt = ping_pong_p50_us(s, round_trips);
  // Pipelined: keep up to 128 requests in flight, writing them in batches.
  const int total = 200'000;
  std::vector<char> batch(32 * 128, 1);
  std::vector<char> replies(8 * 128);
  int sent = 0, received = 0;
  std::size_t partial = 0;
  const auto t0 = clock_type::now();
  while (received < total) {
    const int can_send = std::min(128 - (sent - received), total - sent);
    if (can_send > 0) {
      asio::write(s, asio::buffer(batch.data(), static_cast<std::size_t>(can_send) * 32));
      sent += can_send;
    }
    const std::size_t n = s.read_some(asio::buffer(replies));
    received += static_cast<int>((partial + n) / 8);
    partial = (partial + n) % 8;
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  s.close();
  ::waitpid(child, nullptr, 0);
  return {rtt, unix_socket_rtt_us(round_trips), total / seconds};
}

// --- the floor for large payloads: 64 MiB from one process to another (W9 moves it four times) ---
//
// Each way starts from the payload in the sender's memory and ends with it in memory the receiver had
// faulted in already (as ferry's large blocks are), and counts until the receiver has all of it.

struct payload_floor {
  double memcpy_gbs;        // one copy within a process, for scale
  double unix_socket_gbs;   // written to a Unix socket, read on the other side
  double memfd_fresh_gbs;   // written into a new memfd, its descriptor passed, mapped and read on the other side
  double memfd_reused_gbs;  // the same through one memfd used again (its pages allocated already)
};

constexpr std::size_t floor_payload = std::size_t{64} << 20;

/// `n` bytes advised as huge pages and faulted in.
char* faulted_block(std::size_t n) {
  void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("floor: out of memory");
  ::madvise(p, n, MADV_HUGEPAGE);
  std::memset(p, 1, n);
  return static_cast<char*>(p);
}

/// A one-byte message with room for one descriptor (SCM_RIGHTS), for sendmsg and recvmsg.
struct descriptor_message {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr header{};
  descriptor_message() {
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    header.msg_control = control;
    header.msg_controllen = sizeof control;
  }
  descriptor_message(const descriptor_message&) = delete;
  descriptor_message& operator=(const descriptor_message&) = delete;
};

void send_descriptor(int socket, int fd) {
  descriptor_message m;
  cmsghdr* c = CMSG_FIRSTHDR(&m.header);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  if (::sendmsg(socket, &m.header, 0) != 1) throw std::runtime_error("floor: sendmsg failed");
}

int receive_descriptor(int socket) {
  descriptor_message m;
  if (::recvmsg(socket, &m.header, 0) != 1) return -1;
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m.header)), sizeof fd);
  return fd;
}

/// GB/s of the median of `n` transfers timed by `once`.
template <class Transfer>
double median_gbs(int n, Transfer&& once) {
  std::vector<double> rates;
  for (int i = 0; i < n; ++i) {
    const auto t0 = clock_type::now();
    once();
    rates.push_back(static_cast<double>(floor_payload) / std::chrono::duration<double>(clock_type::now() - t0).count() /
                    1e9);
  }
  return percentile(rates, 0.5);
}

payload_floor measure_payload_floor() {
  constexpr std::size_t n = floor_payload;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) throw std::runtime_error("floor: socketpair failed");
  const pid_t child = ::fork();
  if (child == 0) {
    // The receiver: reads payloads sent over the socket, or descriptors of memfds to map and read; answers
    // each with one byte.
    ::close(sv[0]);
    char* into = faulted_block(n);
    for (char kind = 0; ::read(sv[1], &kind, 1) == 1;) {
      if (kind == 's') {
        for (std::size_t got = 0; got < n;) {
          const ssize_t r = ::read(sv[1], into + got, n - got);
          if (r <= 0) ::_exit(1);
          got += static_cast<std::size_t>(r);
        }
      } else {
        const int fd = receive_descriptor(sv[1]);
        void* p = ::mmap(nullptr, n, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (p == MAP_FAILED) ::_exit(1);
        std::memcpy(into, p, n);
        ::munmap(p, n);
        ::close(fd);
      }
      if (::write(sv[1], "k", 1) != 1) ::_exit(1);
    }
    ::_exit(0);
  }
  ::close(sv[1]);
  const int s = sv[0];
  char* from = faulted_block(n);
  char* copy = faulted_block(n);
  auto write_all = [s](const char* p, std::size_t size) {
    for (std::size_t put = 0; put < size;) {
      const ssize_t w = ::write(s, p + put, size - put);
      if (w <= 0) throw std::runtime_error("floor: write failed");
      put += static_cast<std::size_t>(w);
    }
  };
  auto await_reply = [s] {
    char reply = 0;
    if (::read(s, &reply, 1) != 1) throw std::runtime_error("floor: the receiver failed");
  };
  auto through_memfd = [&](int fd) {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw std::runtime_error("floor: mmap failed");
    std::memcpy(p, from, n);
    ::munmap(p, n);
    write_all("m", 1);
    send_descriptor(s, fd);
    await_reply();
  };
  payload_floor f{};
  f.memcpy_gbs = median_gbs(5, [&] { std::memcpy(copy, from, n); });
  f.unix_socket_gbs = median_gbs(5, [&] {
    write_all("s", 1);
    write_all(from, n);
    await_reply();
  });
  f.memfd_fresh_gbs = median_gbs(5, [&] {
    const int fd = ::memfd_create("ferry-bench-floor", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(n)) != 0) throw std::runtime_error("floor: memfd failed");
    through_memfd(fd);
    ::close(fd);
  });
  const int reused = ::memfd_create("ferry-bench-floor", MFD_CLOEXEC);
  if (reused < 0 || ::ftruncate(reused, static_cast<off_t>(n)) != 0) throw std::runtime_error("floor: memfd failed");
  through_memfd(reused);  // (its pages allocated once, before the timing)
  f.memfd_reused_gbs = median_gbs(5, [&] { through_memfd(reused); });
  ::close(reused);
  ::munmap(copy, n);
  ::munmap(from, n);
  ::close(s);
  ::waitpid(child, nullptr, 0);
  return f;
}

// --- the workloads, run inside one app.main per server mode ---

/// One run's figures, by metric name.
using figures = std::map<std::string, double>;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// W1: 2,000 sequential blocking calls after 200 warm-up calls.
void run_w1(figures& out, const std::vector<pid_t>& other_processes) {
  for (int i = 0; i < 200; ++i) double_it.remote(i);  // warm-up: containers started, caches warm
  const double cpu0 = cpu_seconds(other_processes);
  std::vector<double> latencies;
  latencies.reserve(2000);
  for (std::int64_t i = 0; i < 2000; ++i) {
    const auto t0 = clock_type::now();
    if (double_it.remote(i) != 2 * i) throw std::runtime_error("W1: wrong result");
    latencies.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  const double cpu1 = cpu_seconds(other_processes);
  out["W1 p50 (µs)"] = percentile(latencies, 0.5);
  out["W1 p99 (µs)"] = percentile(latencies, 0.99);
  out["W1 CPU µs per call (all processes)"] = (cpu1 - cpu0) * 1e6 / 2000;
}

/// W2: 10,000 calls started at once with .remote.aio() from one async entrypoint, then gather.
ferry::Task<void> run_w2(figures& out, const std::vector<pid_t>& other_processes) {
  constexpr int n = 10'000;
  co_await double_it.remote.aio(0);  // containers started
  const double cpu0 = cpu_seconds(other_processes);
  const auto t0 = clock_type::now();
  std::vector<ferry::Task<std::int64_t>> calls;
  calls.reserve(n);
  for (std::int64_t i = 0; i < n; ++i) calls.push_back(double_it.remote.aio(i));
  const auto values = co_await ferry::gather(std::move(calls));
  const double elapsed = seconds_since(t0);
  for (std::int64_t i = 0; i < n; ++i) {
    if (values[i] != 2 * i) throw std::runtime_error("W2: wrong result");
  }
  out["W2 calls/s"] = n / elapsed;
  out["W2 CPU µs per call (all processes)"] = (cpu_seconds(other_processes) - cpu0) * 1e6 / n;
}

/// W5: 1,000 calls of an async function that sleeps 100 ms, in one container with max_inputs = 1000.
ferry::Task<void> run_w5(figures& out) {
  co_await async_sleep.remote.aio(0);  // the container is started before the clock starts
  const auto t0 = clock_type::now();
  std::vector<ferry::Task<std::int64_t>> calls;
  for (std::int64_t i = 0; i < 1000; ++i) calls.push_back(async_sleep.remote.aio(i));
  co_await ferry::gather(std::move(calls));
  out["W5 wall (s)"] = seconds_since(t0);
}

/// A memory figure of /proc/PID/status (VmHWM: peak resident set, VmRSS: resident set), in MiB.
double status_mib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  }
  return 0;
}
double peak_rss_mib(pid_t pid) { return status_mib(pid, "VmHWM"); }

/// Memory of a process's own (resident, not shared with any other process: its heap, stacks and written
/// pages), from /proc/PID/smaps_rollup, in MiB. RSS also counts the library pages every process shares.
double private_mib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  double kib = 0;
  while (std::getline(in, line)) {
    if (line.rfind("Private_Clean:", 0) == 0 || line.rfind("Private_Dirty:", 0) == 0) {
      kib += std::stod(line.substr(line.find(':') + 1));
    }
  }
  return kib / 1024.0;
}

/// Starts a new peak: VmHWM falls to the current resident set (this process is reused from run to run).
void reset_peak_rss(pid_t pid) { std::ofstream("/proc/" + std::to_string(pid) + "/clear_refs") << "5"; }

/// W3: map over 1,000,000 items, results in order; peak RSS of every process.
void run_w3(figures& out, const std::vector<pid_t>& other_processes) {
  constexpr std::int64_t n = 1'000'000;
  std::vector<std::int64_t> items(n);
  for (std::int64_t i = 0; i < n; ++i) items[i] = i;
  for (pid_t pid : workload_processes(other_processes)) reset_peak_rss(pid);
  const double cpu0 = cpu_seconds(other_processes);
  const auto t0 = clock_type::now();
  const auto results = double_it.map(items);
  const double elapsed = seconds_since(t0);
  out["W3 CPU µs per item (all processes)"] = (cpu_seconds(other_processes) - cpu0) * 1e6 / n;
  for (std::int64_t i = 0; i < n; ++i) {
    if (results[i] != 2 * i) throw std::runtime_error("W3: wrong result");
  }
  out["W3 items/s"] = n / elapsed;
  out["W3 caller peak RSS (MiB)"] = peak_rss_mib(::getpid());
  double containers = 0;
  for (pid_t root : other_processes.empty() ? std::vector<pid_t>{::getpid()} : other_processes) {
    if (!other_processes.empty()) out["W3 server peak RSS (MiB)"] = peak_rss_mib(root);
    for (pid_t child : children_of(root)) containers = std::max(containers, peak_rss_mib(child));
  }
  out["W3 container peak RSS (MiB)"] = containers;
}

/// One tree-reduce of 1,024 leaves through futures as arguments; its wall time in ms.
double tree_reduce_ms() {
  const auto t0 = clock_type::now();
  std::vector<ferry::Future<std::int64_t>> level;
  for (std::int64_t i = 0; i < 1024; ++i) level.push_back(double_it.future(i));
  while (level.size() > 1) {
    std::vector<ferry::Future<std::int64_t>> next;
    for (std::size_t i = 0; i < level.size(); i += 2) next.push_back(tree_add.future(level[i], level[i + 1]));
    level = std::move(next);
  }
  const std::int64_t total = level[0].result();
  if (total != 1023 * 1024) throw std::runtime_error("W4: wrong result");
  return seconds_since(t0) * 1000;
}

/// W4: the median of five reduces, after one that starts the containers (cold starts are W6's figure).
void run_w4(figures& out) {
  tree_reduce_ms();
  std::vector<double> walls;
  for (int i = 0; i < 5; ++i) walls.push_back(tree_reduce_ms());
  out["W4 wall (ms)"] = percentile(walls, 0.5);
}

/// W7: a 10,000-deep tail-call chain.
void run_w7(figures& out, const std::vector<pid_t>& other_processes) {
  const pid_t server = other_processes.empty() ? ::getpid() : other_processes.front();
  count_fn.remote(1'000);  // container started, and the server's memory for a 1,000-deep chain in use
  const double rss0 = status_mib(server, "VmRSS");
  const auto t0 = clock_type::now();
  if (count_fn.remote(10'000) != 0) throw std::runtime_error("W7: wrong result");
  out["W7 hops/s"] = 10'000 / seconds_since(t0);
  // Flat in n: what a 10,000-deep chain adds to the resident set left by a 1,000-deep one.
  out["W7 server RSS growth, n = 1,000 -> 10,000 (MiB)"] = status_mib(server, "VmRSS") - rss0;
}

/// Runs a fresh copy of this binary with `variable`=`value` in its environment and returns what it printed.
std::string run_copy(const char* variable, const std::string& value) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::setenv(variable, value.c_str(), 1);
    ::execl("/proc/self/exe", "ferry_bench", nullptr);
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string text;
  char chunk[256];
  for (ssize_t n; (n = ::read(fds[0], chunk, sizeof chunk)) > 0;) text.append(chunk, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (text.empty() || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(std::string("the copy run with ") + variable + " failed");
  }
  return text;
}

/// W6: from the exec of a fresh copy of this binary to its first remote result (a new server when embedded,
/// and a new container either way). The child prints the steady clock (system-wide) at its first result.
double cold_start_ms() {
  const auto t0 = clock_type::now();
  const clock_type::time_point first_result{clock_type::duration{std::stoll(run_copy("FERRY_BENCH_COLD_START", "1"))}};
  return std::chrono::duration<double, std::milli>(first_result - t0).count();
}

/// W6, the median of three cold starts. It runs before the other workloads, so that no container of theirs
/// is still stopping while it is measured.
void run_w6(figures& out) {
  std::vector<double> starts;
  for (int i = 0; i < 3; ++i) starts.push_back(cold_start_ms());
  out["W6 cold start to first result (ms)"] = percentile(starts, 0.5);
}

/// W8: spawned calls stored, then drained by two containers: submit rate, drain time, server peak RSS.
ferry::Task<void> run_w8(figures& out, pid_t server) {
  co_await spawned_double.remote.aio(0);  // containers up before the clock starts
  reset_peak_rss(server);
  const auto t0 = clock_type::now();
  std::vector<ferry::FunctionCall<std::int64_t>> calls;
  calls.reserve(static_cast<std::size_t>(w8_calls));
  constexpr std::int64_t batch = 1000;
  for (std::int64_t start = 0; start < w8_calls; start += batch) {
    std::vector<ferry::Task<ferry::FunctionCall<std::int64_t>>> spawns;
    for (std::int64_t i = start; i < std::min(start + batch, w8_calls); ++i)
      spawns.push_back(spawned_double.spawn.aio(i));
    for (auto& c : co_await ferry::gather(std::move(spawns))) calls.push_back(std::move(c));
  }
  const double submit_s = seconds_since(t0);
  for (std::int64_t start = 0; start < w8_calls; start += batch) {
    std::vector<ferry::Task<std::int64_t>> gets;
    for (std::int64_t i = start; i < std::min(start + batch, w8_calls); ++i) gets.push_back(calls[i].get.aio());
    const auto values = co_await ferry::gather(std::move(gets));
    for (std::int64_t i = start; i < std::min(start + batch, w8_calls); ++i) {
      if (values[i - start] != 2 * i) throw std::runtime_error("W8: wrong result");
    }
  }
  out["W8 spawn submits/s"] = static_cast<double>(w8_calls) / submit_s;
  out["W8 drain after the last submit (s)"] = seconds_since(t0) - submit_s;
  // (Embedded, the server shares the app's process, whose peak W3's million results set.)
  if (server != ::getpid()) out["W8 server peak RSS (MiB)"] = peak_rss_mib(server);
}

/// W9: round trips of a 64 MiB byte string (argument and result); GB/s = 64 MiB / round-trip time.
void run_w9(figures& out) {
  ferry::bytes payload(64 << 20);
  for (std::size_t i = 0; i < payload.size(); i += 4096) payload[i] = static_cast<std::byte>(i >> 12);
  echo_bytes.remote(ferry::bytes(16));  // container started
  std::vector<double> rates;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = clock_type::now();
    const ferry::bytes back = echo_bytes.remote(payload);
    rates.push_back(static_cast<double>(payload.size()) / seconds_since(t0) / 1e9);
    if (back != payload) throw std::runtime_error("W9: wrong result");
  }
  out["W9 64 MiB round trip (GB/s)"] = percentile(rates, 0.5);
}

/// Resident sets once the workloads are over and the processes have been idle for a while: the standalone
/// server (the embedded one shares the benchmark's own process) and the largest container.
void measure_idle_rss(figures& out, const std::vector<pid_t>& other_processes) {
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const pid_t server = other_processes.empty() ? ::getpid() : other_processes.front();
  if (!other_processes.empty()) {
    out["RSS idle server (MiB)"] = status_mib(server, "VmRSS");
    out["RSS idle server, private (MiB)"] = private_mib(server);
  }
  double container = 0, container_private = 0;
  const auto containers = children_of(server);
  for (pid_t child : containers) {
    container = std::max(container, status_mib(child, "VmRSS"));
    container_private = std::max(container_private, private_mib(child));
  }
  if (containers.empty()) return;  // (no workload ran: there is no container to measure, not one of 0 MiB)
  out["RSS idle container (MiB)"] = container;
  out["RSS idle container, private (MiB)"] = container_private;
}

/// The workloads to run (`--only W2,W3`); empty runs them all.
std::vector<std::string> only;

bool selected(const char* workload) {
  return only.empty() || std::find(only.begin(), only.end(), workload) != only.end();
}

figures run_workloads(const std::vector<pid_t>& other_processes) {
  figures out;
  if (selected("W6")) run_w6(out);  // separate programs, each with its own embedded server when embedded
  char name[] = "ferry_bench";
  char* argv[] = {name, nullptr};
  const int code = app.main(1, argv, [&] {
    if (selected("W1")) run_w1(out, other_processes);
    if (selected("W2")) ferry::run(run_w2(out, other_processes));
    if (selected("W3")) run_w3(out, other_processes);
    if (selected("W4")) run_w4(out);
    if (selected("W5")) ferry::run(run_w5(out));
    if (selected("W7")) run_w7(out, other_processes);
    if (selected("W8")) ferry::run(run_w8(out, other_processes.empty() ? ::getpid() : other_processes.front()));
    if (selected("W9")) run_w9(out);
    if (selected("RSS")) measure_idle_rss(out, other_processes);
  });
  if (code != 0) std::exit(code);
  return out;
}

/// A standalone `ferry server` for the standalone runs.
struct standalone_server {
  pid_t pid = -1;
  std::string address, token, state_dir;

  standalone_server() {
    char dir[] = "/tmp/ferry-bench-XXXXXX";
    state_dir = ::mkdtemp(dir);
    int err_pipe[2];
    if (::pipe(err_pipe) != 0) throw std::runtime_error("pipe");
    pid = ::fork();
    if (pid == 0) {
      ::dup2(err_pipe[1], 2);
      ::execl(FERRY_CLI_PATH, "ferry", "server", "--port", "0", "--state-dir", state_dir.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(err_pipe[1]);
    std::string log;
    char chunk[512];
    std::smatch m;
    while (!std::regex_search(log, m, std::regex(R"( listening on (\S+))"))) {
      const ssize_t n = ::read(err_pipe[0], chunk, sizeof chunk);
      if (n <= 0) throw std::runtime_error("ferry server did not start: " + log);
      log.append(chunk, static_cast<std::size_t>(n));
    }
    address = m[1];
    std::ifstream in(state_dir + "/token");
    std::getline(in, token);
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread([fd = err_pipe[0]] {
      char sink[4096];
      while (::read(fd, sink, sizeof sink) > 0) {
      }
      ::close(fd);
    }).detach();
  }
  ~standalone_server() {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    std::filesystem::remove_all(state_dir);
  }
};

/// One decimal, or three for small values (seconds).
std::string fmt(double v, int precision = -1) {
  if (precision < 0) precision = v < 10 ? 3 : 1;
  char s[64];
  std::snprintf(s, sizeof s, "%.*f", precision, v);
  return s;
}

// --- scale curves (--curves DIR): how cost grows with the work, on the embedded server ---

/// One curve: a column per figure, a row per point; written as DIR/NAME.tsv and plotted to DIR/NAME.png.
struct curve {
  std::string name, title, x_label;
  std::vector<std::string> columns;  // the x value first, then the figures
  std::vector<std::vector<double>> rows;
  std::vector<std::string> plotted;  // the figures drawn, each against the x value (log-log)
};

/// Callers: c threads each making blocking calls, and c async callers each awaiting one call at a time.
curve curve_callers() {
  if (!selected("callers")) return {};
  curve c{"callers",
          "W1/W2 with c concurrent callers",
          "concurrent callers",
          {"callers", "blocking calls/s", "blocking p50 (µs)", "aio calls/s"},
          {},
          {"blocking calls/s", "aio calls/s"}};
  for (int i = 0; i < 200; ++i) double_it.remote(i);  // containers started
  for (const int callers : {1, 10, 100, 1000}) {
    const int per_caller = std::max(20, 4000 / callers);
    std::vector<std::vector<double>> latencies(static_cast<std::size_t>(callers));
    auto t0 = clock_type::now();
    {
      std::vector<std::jthread> threads;
      for (int t = 0; t < callers; ++t) {
        threads.emplace_back([&, t] {
          for (std::int64_t i = 0; i < per_caller; ++i) {
            const auto t1 = clock_type::now();
            if (double_it.remote(i) != 2 * i) throw std::runtime_error("callers: wrong result");
            latencies[t].push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t1).count());
          }
        });
      }
    }
    const double blocking = callers * per_caller / seconds_since(t0);
    std::vector<double> all;
    for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    t0 = clock_type::now();
    ferry::run([&]() -> ferry::Task<void> {
      std::vector<ferry::Task<void>> workers;
      for (int t = 0; t < callers; ++t) {
        workers.push_back([](int n) -> ferry::Task<void> {
          for (std::int64_t i = 0; i < n; ++i) {
            if (co_await double_it.remote.aio(i) != 2 * i) throw std::runtime_error("callers: wrong result");
          }
        }(per_caller));
      }
      co_await ferry::gather(std::move(workers));
    }());
    const double aio = callers * per_caller / seconds_since(t0);
    c.rows.push_back({static_cast<double>(callers), blocking, percentile(all, 0.5), aio});
  }
  return c;
}

/// Map: items/s and the caller's peak resident set, from 10^3 to 10^7 items.
curve curve_map() {
  if (!selected("map")) return {};
  curve c{"map",   "map of n items",
          "items", {"items", "items/s", "caller peak RSS (MiB)"},
          {},      {"items/s", "caller peak RSS (MiB)"}};
  for (std::int64_t n = 1000; n <= 10'000'000; n *= 10) {
    std::vector<std::int64_t> items(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) items[static_cast<std::size_t>(i)] = i;
    reset_peak_rss(::getpid());
    const auto t0 = clock_type::now();
    const auto results = double_it.map(items);
    const double elapsed = seconds_since(t0);
    for (std::int64_t i = 0; i < n; ++i) {
      if (results[static_cast<std::size_t>(i)] != 2 * i) throw std::runtime_error("map: wrong result");
    }
    c.rows.push_back({static_cast<double>(n), static_cast<double>(n) / elapsed, peak_rss_mib(::getpid())});
  }
  return c;
}

/// Payloads: GB/s of a byte string's round trip (argument and result), from 8 B to 256 MiB (less the room a
/// frame's header takes under the default --max-frame-size).
curve curve_payload() {
  if (!selected("payload")) return {};
  curve c{"payload", "round trip of a byte string", "bytes", {"bytes", "GB/s", "round trip (µs)"}, {}, {"GB/s"}};
  echo_bytes.remote(ferry::bytes(16));  // container started
  constexpr std::size_t KiB = 1024, MiB = KiB * KiB;
  for (const std::size_t size : {std::size_t{8}, std::size_t{64}, std::size_t{512}, 4 * KiB, 32 * KiB, 256 * KiB,
                                 2 * MiB, 16 * MiB, 64 * MiB, 256 * MiB - KiB}) {  // (the default frame limit)
    ferry::bytes payload(size);
    for (std::size_t i = 0; i < size; i += 4096) payload[i] = static_cast<std::byte>(i >> 12);
    const int reps = size <= MiB ? 200 : size <= 16 * MiB ? 10 : 3;
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = clock_type::now();
      const ferry::bytes back = echo_bytes.remote(payload);
      times.push_back(seconds_since(t0));
      if (back.size() != payload.size()) throw std::runtime_error("payload: wrong result");
    }
    const double t = percentile(times, 0.5);
    c.rows.push_back({static_cast<double>(size), static_cast<double>(size) / t / 1e9, t * 1e6});
  }
  return c;
}

/// Functions: what a call costs with 1 to 1,000 functions deployed. Each point is a fresh program (an embedded
/// server of its own) declaring that many functions: the time its app.main takes to deploy them and make the
/// first call, then calls/s to one of them (blocking, and 256 aio calls in flight), blocking calls/s spread
/// round-robin over up to 10 of them (a container each), and the program's resident set at the end.
curve curve_functions() {
  if (!selected("functions")) return {};
  curve c{"functions",
          "calls with n functions deployed",
          "functions deployed",
          {"functions", "start to first result (ms)", "blocking calls/s", "aio calls/s", "round-robin calls/s",
           "RSS (MiB)"},
          {},
          {"blocking calls/s", "aio calls/s", "start to first result (ms)"}};
  for (const int n : {1, 10, 100, 1000}) {
    std::istringstream point(run_copy("BENCH_DEPLOYED_FUNCTIONS", std::to_string(n)));
    std::vector<double> row{static_cast<double>(n)};
    for (double figure; point >> figure;) row.push_back(figure);
    if (row.size() != c.columns.size()) throw std::runtime_error("functions: the copy printed the wrong figures");
    c.rows.push_back(std::move(row));
  }
  return c;
}

/// One point of the functions curve, in the copy that declares the functions: prints its figures.
int functions_point(int argc, char** argv) {
  const auto t0 = clock_type::now();
  return app.main(argc, argv, [&] {
    auto& first = counted_functions.front();
    if (first.remote(1) != 2) throw std::runtime_error("functions: wrong result");
    const double start_ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    constexpr int calls = 4000;
    auto t1 = clock_type::now();
    for (std::int64_t i = 0; i < calls; ++i) {
      if (first.remote(i) != 2 * i) throw std::runtime_error("functions: wrong result");
    }
    const double blocking = calls / seconds_since(t1);
    constexpr int aio_calls = 50'000;
    t1 = clock_type::now();
    ferry::run([&]() -> ferry::Task<void> {
      std::vector<ferry::Task<void>> workers;
      for (int w = 0; w < 256; ++w) {
        workers.push_back([](auto& f, int n) -> ferry::Task<void> {
          for (std::int64_t i = 0; i < n; ++i) {
            if (co_await f.remote.aio(i) != 2 * i) throw std::runtime_error("functions: wrong result");
          }
        }(first, aio_calls / 256));
      }
      co_await ferry::gather(std::move(workers));
    }());
    const double aio = (aio_calls / 256) * 256 / seconds_since(t1);
    const std::size_t spread = std::min<std::size_t>(counted_functions.size(), 10);
    for (std::size_t k = 0; k < spread; ++k) counted_functions[k].remote(0);  // their containers started
    t1 = clock_type::now();
    for (std::int64_t i = 0; i < calls; ++i) {
      if (counted_functions[static_cast<std::size_t>(i) % spread].remote(i) != 2 * i) {
        throw std::runtime_error("functions: wrong result");
      }
    }
    const double round_robin = calls / seconds_since(t1);
    std::cout << start_ms << ' ' << blocking << ' ' << aio << ' ' << round_robin << ' '
              << status_mib(::getpid(), "VmRSS") << std::flush;
  });
}

/// Writes the curve's TSV and Markdown table; plots it when gnuplot is there (scripts/bench.sh installs it).
void write_curve(const curve& c, const std::filesystem::path& dir, std::ostream& md) {
  std::ofstream tsv(dir / (c.name + ".tsv"));
  md << "\n### " << c.title << "\n\n|";
  for (const auto& column : c.columns) {
    tsv << (&column == &c.columns.front() ? "" : "\t") << column;
    md << ' ' << column << " |";
  }
  tsv << '\n';
  md << "\n|";
  for (std::size_t i = 0; i < c.columns.size(); ++i) md << " ---: |";
  md << '\n';
  for (const auto& row : c.rows) {
    md << '|';
    for (std::size_t i = 0; i < row.size(); ++i) {
      tsv << (i ? "\t" : "") << row[i];
      md << ' ' << fmt(row[i], i == 0 || row[i] >= 100 ? 0 : -1) << " |";
    }
    tsv << '\n';
    md << '\n';
  }
  tsv.close();
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return;
  std::ofstream plot(dir / (c.name + ".gp"));
  plot << "set terminal pngcairo size 900,420 font ',10'\nset output '" << c.name
       << ".png'\nset datafile separator '\\t'\nset key autotitle columnhead left top\nset logscale xy\nset grid\n"
       << "set xlabel '" << c.x_label << "'\nset multiplot layout 1," << c.plotted.size() << " title '" << c.title
       << " (embedded server)'\n";
  for (const auto& figure : c.plotted) {
    const auto column = std::find(c.columns.begin(), c.columns.end(), figure) - c.columns.begin() + 1;
    plot << "set ylabel '" << figure << "'\nplot '" << c.name << ".tsv' using 1:" << column
         << " with linespoints lw 2 pt 7\n";
  }
  plot << "unset multiplot\n";
  plot.close();
  const std::string command = "cd '" + dir.string() + "' && gnuplot " + c.name + ".gp";  // (its paths are relative)
  if (std::system(command.c_str()) != 0) std::cerr << "ferry_bench: gnuplot failed on " << c.name << ".gp\n";
}

/// --curves DIR: every curve on the embedded server; the tables to stdout and DIR/curves.md.
int run_curves(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::ostringstream md;
  char name[] = "ferry_bench";
  char* argv[] = {name, nullptr};
  const int code = app.main(1, argv, [&] {
    for (auto* make : {curve_callers, curve_map, curve_payload, curve_functions}) {
      const curve c = make();
      if (c.rows.empty()) continue;  // (not selected)
      write_curve(c, dir, md);
    }
  });
  std::cout << md.str();
  std::ofstream(dir / "curves.md") << md.str();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  if (std::getenv("FERRY_CONTAINER_ID")) return app.main(argc, argv, [] {});
  if (std::getenv("BENCH_DEPLOYED_FUNCTIONS")) return functions_point(argc, argv);
  if (std::getenv("FERRY_BENCH_COLD_START")) {  // W6's fresh program
    return app.main(argc, argv, [] {
      double_it.remote(1);
      std::cout << clock_type::now().time_since_epoch().count() << std::flush;
    });
  }
  int runs = 3;
  bool embedded_once = false;
  std::string curves_dir;
  std::string out_file = "bench-results.md";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) {
      runs = std::max(3, std::atoi(argv[++i]));
    } else if (a == "--embedded-once") {  // for profiling: one run of the workloads on the embedded server
      embedded_once = true;
    } else if (a == "--only" && i + 1 < argc) {
      std::istringstream list(argv[++i]);
      for (std::string w; std::getline(list, w, ',');) only.push_back(w);
    } else if (a == "--w8-calls" && i + 1 < argc) {
      w8_calls = std::max<std::int64_t>(1000, std::atoll(argv[++i]));
    } else if (a == "--out" && i + 1 < argc) {
      out_file = argv[++i];
    } else if (a == "--curves" && i + 1 < argc) {
      curves_dir = argv[++i];
    } else {
      const bool help = a == "--help" || a == "-h";
      if (!help) std::cerr << "ferry_bench: unknown option '" << a << "'\n";
      (help ? std::cout : std::cerr)
          << "usage: ferry_bench [--runs N (>= 3)] [--out FILE] [--only W1,...,W9,RSS] [--w8-calls N] "
             "[--embedded-once] [--curves DIR]\n"
             "  --runs N         runs of every workload, embedded and standalone (default 3)\n"
             "  --out FILE       where the Markdown table goes too (default bench-results.md)\n"
             "  --only LIST      these workloads only (with --curves: callers, map, payload, functions)\n"
             "  --w8-calls N     W8's spawned calls (default 1,000,000)\n"
             "  --embedded-once  one run on the embedded server, figures as plain lines (for profiling)\n"
             "  --curves DIR     instead of the table, how cost grows with the work (callers, map size, payload\n"
             "                   size, functions deployed) on the embedded server: DIR/NAME.tsv, DIR/NAME.png (with\n"
             "                   gnuplot), curves.md\n";
      return help ? 0 : 2;
    }
  }

  if (!curves_dir.empty()) return run_curves(curves_dir);
  if (embedded_once) {
    for (const auto& [metric, value] : run_workloads({})) std::cout << metric << ": " << value << '\n';
    return 0;
  }

  std::vector<double> floor_rtt, floor_unix_rtt, floor_pipelined;
  std::map<std::string, std::vector<double>> payload_floors;        // metric -> one figure per run
  std::map<std::string, std::vector<double>> embedded, standalone;  // metric -> one figure per run
  for (int r = 0; r < runs; ++r) {
    std::cerr << "run " << r + 1 << "/" << runs << ": floor" << std::flush;
    const floor_result f = measure_floor(2000);
    floor_rtt.push_back(f.rtt_p50_us);
    floor_unix_rtt.push_back(f.unix_rtt_p50_us);
    floor_pipelined.push_back(f.pipelined_per_s);
    const payload_floor pf = measure_payload_floor();
    payload_floors["64 MiB memcpy within a process (GB/s)"].push_back(pf.memcpy_gbs);
    payload_floors["64 MiB to another process over a Unix socket (GB/s)"].push_back(pf.unix_socket_gbs);
    payload_floors["64 MiB to another process through a new memfd (GB/s)"].push_back(pf.memfd_fresh_gbs);
    payload_floors["64 MiB to another process through a reused memfd (GB/s)"].push_back(pf.memfd_reused_gbs);
    std::cerr << ", embedded" << std::flush;
    ::unsetenv("FERRY_SERVER");
    for (const auto& [metric, value] : run_workloads({})) embedded[metric].push_back(value);
    std::cerr << ", standalone\n";
    {
      standalone_server server;
      ::setenv("FERRY_SERVER", server.address.c_str(), 1);
      ::setenv("FERRY_TOKEN", server.token.c_str(), 1);
      for (const auto& [metric, value] : run_workloads({server.pid})) standalone[metric].push_back(value);
      ::unsetenv("FERRY_SERVER");
      ::unsetenv("FERRY_TOKEN");
    }
  }

  const stats rtt = summarize(floor_rtt);
  // bench.md's targets, by metric: the target's text, and whether a median meets it.
  struct target {
    std::string text;
    std::function<bool(double)> met;
  };
  auto target_of = [&](const std::string& metric, bool embedded) -> std::optional<target> {
    auto at_least = [](double t, std::string text) { return target{text, [t](double v) { return v >= t; }}; };
    auto at_most = [](double t, std::string text) { return target{text, [t](double v) { return v <= t; }}; };
    if (metric == "W1 p50 (µs)") {
      const double ratio = embedded ? 1.5 : 2.0;
      return at_most(ratio * rtt.median, "≤ " + fmt(ratio, 1) + "x floor");
    }
    if (metric == "W2 calls/s") return at_least(200'000, "≥ 200,000");
    if (metric == "W3 items/s") return at_least(500'000, "≥ 500,000");
    if (metric == "W3 caller peak RSS (MiB)") return at_most(200, "≤ 200");
    if (metric == "W4 wall (ms)") return at_most(20, "≤ 20");
    if (metric == "W5 wall (s)") return at_most(0.15, "≤ 0.15");
    if (metric == "W6 cold start to first result (ms)") return at_most(20, "≤ 20");
    if (metric == "W7 hops/s") return at_least(50'000, "≥ 50,000");
    if (metric.starts_with("W7 server RSS growth")) return at_most(1, "flat (≤ 1)");
    if (metric == "W8 drain after the last submit (s)") return at_most(20, "≤ 20");
    if (metric == "W9 64 MiB round trip (GB/s)") return at_least(2, "≥ 2");
    if (metric == "RSS idle server (MiB)") return at_most(10, "≤ 10");
    if (metric == "RSS idle container (MiB)") return at_most(5, "≤ 5");
    return std::nullopt;
  };
  const stats pipelined = summarize(floor_pipelined);
  std::ostringstream table;
  table << "| workload | server | metric | median | min | max | vs floor | target | met |\n";
  table << "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |\n";
  auto row = [&](const std::string& w, const std::string& server, const std::string& metric, const stats& s,
                 const std::string& ratio, const std::optional<target>& goal) {
    table << "| " << w << " | " << server << " | " << metric << " | " << fmt(s.median) << " | " << fmt(s.min) << " | "
          << fmt(s.max) << " | " << ratio << " | " << (goal ? goal->text : "") << " | "
          << (goal ? (goal->met(s.median) ? "yes" : "**no**") : "") << " |\n";
  };
  row("floor", "-", "TCP ping-pong RTT p50 (µs)", rtt, "1.0x", std::nullopt);
  row("floor", "-", "pipelined requests/s", pipelined, "1.0x", std::nullopt);
  row("floor", "-", "Unix socket ping-pong RTT p50 (µs)", summarize(floor_unix_rtt),
      fmt(summarize(floor_unix_rtt).median / rtt.median, 2) + "x", std::nullopt);
  for (const auto& [metric, values] : payload_floors) row("floor", "-", metric, summarize(values), "-", std::nullopt);
  // Latencies compare with the floor's round trip, throughputs with its pipelined rate.
  auto ratio = [&](const std::string& metric, const stats& s) -> std::string {
    if (metric.find("(µs)") != std::string::npos && metric.find("CPU") == std::string::npos) {
      return fmt(s.median / rtt.median, 2) + "x";
    }
    if (metric.find("/s") != std::string::npos) return fmt(s.median / pipelined.median, 3) + "x";
    return "-";
  };
  for (const auto& [mode, results] : {std::pair{"embedded", &embedded}, std::pair{"standalone", &standalone}}) {
    for (const auto& [metric, values] : *results) {
      const stats s = summarize(values);
      row(metric.substr(0, metric.find(' ')), mode, metric.substr(metric.find(' ') + 1), s, ratio(metric, s),
          target_of(metric, std::string(mode) == "embedded"));
    }
  }
  std::cout << table.str();
  std::ofstream(out_file) << table.str();
  std::cerr << "(" << runs << " runs; table written to " << out_file << ")\n";
  return 0;
}
