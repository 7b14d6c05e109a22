#include "container/throw_trace.hpp"

#include <dlfcn.h>
#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <ferry/errors.hpp>
#include <cstdlib>
#include <memory>
#include <typeinfo>
#include <vector>

namespace ferry::container {

namespace {
std::atomic<bool> recording{false};

struct throw_stack {
  void* frames[48];
  int size = 0;
};
thread_local throw_stack last;
}  // namespace

void record_throw_stacks() { recording.store(true, std::memory_order_relaxed); }

namespace {
void on_fatal_signal(int sig) {
  // Async-signal-safe enough for a dying process: backtrace_symbols_fd does not allocate.
  const char header[] = "ferry container: fatal signal; stack:\n";
  (void)!::write(STDERR_FILENO, header, sizeof header - 1);
  void* frames[64];
  const int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}
}  // namespace

void print_stack_on_fatal_signals() {
  void* warm_up[1];
  backtrace(warm_up, 1);  // loads libgcc now, not in the signal handler
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, on_fatal_signal);
}

namespace {
/// Frames of the standard library's call machinery (std::function, std::apply, std::invoke).
bool is_call_plumbing(const std::string& frame) {
  for (const char* prefix : {"std::", "void std::", "decltype(auto) std::"}) {
    if (frame.rfind(prefix, 0) == 0) return true;
  }
  return false;
}
}  // namespace

std::string last_throw_stack() {
  if (last.size <= 1) return {};
  std::unique_ptr<char*, decltype(&std::free)> symbols(backtrace_symbols(last.frames, last.size), &std::free);
  if (!symbols) return {};
  std::vector<std::string> frames;
  // Frame 0 is the throw hook itself.
  for (int i = 1; i < last.size; ++i) {
    const std::string line = symbols.get()[i];
    // "binary(mangled+0x1f) [0x...]": demangle the symbol when there is one.
    const auto open = line.find('(');
    const auto plus = line.find('+', open);
    const bool named = open != std::string::npos && plus != std::string::npos && plus > open + 1;
    std::string frame = named ? detail::demangle(line.substr(open + 1, plus - open - 1).c_str()) : line;
    // What lies below the invoker (or the coroutine machinery that resumed the body) is ferry's container
    // runtime, not the user's code.
    if (frame.rfind("ferry::detail::body_invoker", 0) == 0 ||
        frame.rfind("ferry::detail::async_body_invoker", 0) == 0 || frame.rfind("boost::asio::detail::", 0) == 0) {
      while (!frames.empty() && is_call_plumbing(frames.back())) frames.pop_back();
      break;
    }
    frames.push_back(std::move(frame));
  }
  std::string out;
  for (std::size_t i = 0; i < frames.size(); ++i) out += "  #" + std::to_string(i) + " " + frames[i] + "\n";
  return out;
}

}  // namespace ferry::container

// Interposes the C++ runtime's throw to record the thrower's stack, then throws as usual. The
// executable's definition wins over libstdc++'s for every throw the program makes.
namespace __cxxabiv1 {
extern "C" void __cxa_throw(void* thrown, std::type_info* type, void(_GLIBCXX_CDTOR_CALLABI* destructor)(void*)) {
  using real_throw = void (*)(void*, std::type_info*, void(_GLIBCXX_CDTOR_CALLABI*)(void*));
  static const auto real = reinterpret_cast<real_throw>(dlsym(RTLD_NEXT, "__cxa_throw"));
  if (ferry::container::recording.load(std::memory_order_relaxed)) {
    ferry::container::last.size = backtrace(ferry::container::last.frames, 48);
  }
  real(thrown, type, destructor);
  std::abort();  // unreachable: the real __cxa_throw does not return
}
}  // namespace __cxxabiv1
