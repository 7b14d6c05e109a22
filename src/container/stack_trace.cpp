#include "container/stack_trace.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <execinfo.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "container/current.hpp"

namespace ferry::container {

namespace {

constexpr int max_frames = 64;
constexpr int short_stack_frames = 16;

/// elfutils' libdw, loaded at the first stack (dlopen) rather than linked: a process that never reports a
/// stack (most programs, and containers whose bodies do not fail) neither maps it nor its libraries (libelf,
/// libz, liblzma, libbz2), which costs each process's start about 0.7 ms and some memory. Without it (not
/// installed), frames are named from the dynamic symbol table alone, without files and lines.
struct libdw_functions {
  decltype(&dwfl_begin) begin = nullptr;
  decltype(&dwfl_end) end = nullptr;
  decltype(&dwfl_linux_proc_report) linux_proc_report = nullptr;
  decltype(&dwfl_report_end) report_end = nullptr;
  decltype(&dwfl_addrmodule) addrmodule = nullptr;
  decltype(&dwfl_module_addrname) module_addrname = nullptr;
  decltype(&dwfl_module_getsrc) module_getsrc = nullptr;
  decltype(&dwfl_lineinfo) lineinfo = nullptr;
  Dwfl_Callbacks callbacks{};

  /// Loads libdw and its functions; false (and nothing loaded) when any is missing.
  bool load() {
    void* lib = ::dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return false;
    bool all = true;
    auto find = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(lib, name));
      all = all && fn;
    };
    find(begin, "dwfl_begin");
    find(end, "dwfl_end");
    find(linux_proc_report, "dwfl_linux_proc_report");
    find(report_end, "dwfl_report_end");
    find(addrmodule, "dwfl_addrmodule");
    find(module_addrname, "dwfl_module_addrname");
    find(module_getsrc, "dwfl_module_getsrc");
    find(lineinfo, "dwfl_lineinfo");
    find(callbacks.find_elf, "dwfl_linux_proc_find_elf");
    find(callbacks.find_debuginfo, "dwfl_standard_find_debuginfo");
    if (!all) {
      ::dlclose(lib);
      *this = {};
    }
    return all;
  }
};

/// libdw and its view of this process's modules, made at the first stack. Not thread-safe: guarded by
/// symbols_mu. It reads symbol tables and debug information lazily, a compilation unit at a time, so a
/// stack costs little memory however large the binary's debug information.
libdw_functions dw;
Dwfl* symbols = nullptr;
bool symbols_tried = false;
std::mutex symbols_mu;
bool full_stacks = false;
const void* program_base = nullptr;  // where the executable (with libferry in it) is loaded
std::atomic<bool> recording{false};

struct throw_stack {
  void* frames[48];
  int size = 0;
};
thread_local throw_stack last;

/// Made at the first stack (not at start: it loads libdw and reads the process's modules, which costs a
/// start milliseconds). Requires symbols_mu.
void make_symbols() {
  if (std::exchange(symbols_tried, true) || !dw.load()) return;
  Dwfl* session = dw.begin(&dw.callbacks);
  if (session && dw.linux_proc_report(session, ::getpid()) == 0 && dw.report_end(session, nullptr, nullptr) == 0) {
    symbols = session;
  } else if (session) {
    dw.end(session);
  }
}

/// What needs no symbols: read at start.
void read_settings() {
  Dl_info self{};
  if (::dladdr(reinterpret_cast<const void*>(&read_settings), &self)) program_base = self.dli_fbase;
  const char* full = std::getenv("FERRY_FULL_STACKS");
  full_stacks = full && *full && std::strcmp(full, "0") != 0;
}

/// A frame, symbolized. Its strings belong to elfutils, which keeps them for the process's life.
struct frame {
  std::uintptr_t pc = 0;           // the call's address (a return address less one)
  const char* function = nullptr;  // mangled; nullptr when nothing names it
  const char* file = nullptr;      // nullptr without debug information
  int line = 0;
  bool in_program = false;  // in the executable, not in a shared library (libc, libstdc++, ...)
};

struct frame_list {
  frame frames[max_frames];
  char names[max_frames][256];  // demangled
  int size = 0;
};

/// Names the frames at `pcs` (call addresses). Requires symbols_mu. Source lines are looked up in the
/// program's own debug information only: a library's (libc's, when installed) would be read for nothing.
void symbolize(const std::uintptr_t* pcs, int n, frame_list& list) {
  make_symbols();
  list.size = 0;
  for (int i = 0; i < n && list.size < max_frames; ++i) {
    frame& f = list.frames[list.size++];
    f = {pcs[i]};
    Dl_info info{};
    // NOLINTNEXTLINE(performance-no-int-to-ptr): dladdr takes the frame's address as a pointer
    f.in_program = ::dladdr(reinterpret_cast<void*>(pcs[i]), &info) && info.dli_fbase == program_base;
    Dwfl_Module* module = symbols ? dw.addrmodule(symbols, pcs[i]) : nullptr;
    if (module) f.function = dw.module_addrname(module, pcs[i]);
    if (!f.function) f.function = info.dli_sname;
    if (module && f.in_program) {
      if (Dwfl_Line* line = dw.module_getsrc(module, pcs[i])) {
        f.file = dw.lineinfo(line, nullptr, &f.line, nullptr, nullptr, nullptr);
      }
    }
    char* name = list.names[list.size - 1];
    int status = -1;
    char* demangled = f.function ? abi::__cxa_demangle(f.function, nullptr, nullptr, &status) : nullptr;
    std::snprintf(name, sizeof list.names[0], "%s",
                  status == 0 && demangled ? demangled : (f.function ? f.function : "??"));
    std::free(demangled);
  }
}

bool mentions_any(std::string_view name, std::initializer_list<std::string_view> parts) {
  for (std::string_view part : parts) {
    if (name.find(part) != std::string_view::npos) return true;
  }
  return false;
}

/// Frames of what calls a body (std::function, std::invoke, std::apply), above ferry's invoker. (A demangled
/// name starts with its return type: "long std::__invoke_impl<...>(...)".)
bool is_call_plumbing(std::string_view name) {
  return mentions_any(name, {"std::__invoke", "std::invoke", "std::_Function_handler", "std::function<",
                             "std::__apply_impl", "std::apply"});
}

/// Where ferry's container runtime begins, below the body.
bool is_runtime(std::string_view name) {
  return mentions_any(name, {"ferry::detail::body_invoker", "ferry::detail::async_body_invoker"}) ||
         name.starts_with("boost::asio::detail::") || name.find(" boost::asio::detail::") != std::string_view::npos;
}

/// The frames to show: in the short form, from the first of the user's (or the library function it called
/// last, such as abort or std::string::at) down to the body; all of them with FERRY_FULL_STACKS=1.
std::pair<int, int> shown_frames(const frame_list& list) {
  if (full_stacks) return {0, list.size};
  // The frames that recorded the stack come first: the throw hook or the signal handler (and, in a sanitizer
  // build, its interceptors of backtrace and __cxa_throw).
  int first = 0;
  for (int i = 0; i < std::min(list.size, 6); ++i) {
    const std::string_view name = list.names[i];
    if (name == "__cxa_throw" || name.find("::on_fatal_signal(") != std::string_view::npos ||
        name.starts_with("__interceptor_") || name.starts_with("__sanitizer")) {
      first = i + 1;
    }
  }
  while (first < list.size && std::strstr(list.names[first], "__restore_rt")) ++first;  // the signal trampoline
  int program = first;
  while (program < list.size && !list.frames[program].in_program) ++program;
  if (program < list.size && program > first) first = program - 1;  // the library call the program made
  int end = first;
  while (end < list.size && !is_runtime(list.names[end])) ++end;
  if (end < list.size) {
    while (end > first + 1 && is_call_plumbing(list.names[end - 1])) --end;
  }
  return {first, end};
}

/// Writes the frames shown, one "  #i name at file:line" a line, through `emit(text, n)`.
template <class Emit>
void format_frames(const frame_list& list, Emit emit) {
  const auto [first, end] = shown_frames(list);
  char line[512];
  int shown = 0;
  for (int i = first; i < end; ++i, ++shown) {
    if (!full_stacks && shown == short_stack_frames) {
      const int n =
          std::snprintf(line, sizeof line, "  ... %d more frames (FERRY_FULL_STACKS=1 shows them)\n", end - i);
      emit(line, n);
      return;
    }
    const frame& f = list.frames[i];
    const char* file = f.file;
    if (file && !full_stacks) {
      if (const char* slash = std::strrchr(file, '/')) file = slash + 1;
    }
    const int n = file ? std::snprintf(line, sizeof line, "  #%d %s at %s:%d\n", shown, list.names[i], file, f.line)
                       : std::snprintf(line, sizeof line, "  #%d %s\n", shown, list.names[i]);
    emit(line, std::min<int>(n, sizeof line - 1));
  }
}

void write_text(const char* text, int n) { (void)!::write(STDERR_FILENO, text, static_cast<std::size_t>(n)); }

int fatal_signal = 0;

/// If symbolizing hangs (the crash happened inside malloc, whose lock the demangler then waits for), the
/// alarm ends the process with the signal that crashed it.
void on_symbolizer_stuck(int) {
  ::signal(fatal_signal, SIG_DFL);
  ::raise(fatal_signal);
}

void on_fatal_signal(int sig) {
  fatal_signal = sig;
  ::signal(SIGALRM, on_symbolizer_stuck);
  ::alarm(2);
  char header[256];
  const char* name = sigabbrev_np(sig);
  const container::input_context* input = container::current_input();
  const int n =
      input ? std::snprintf(header, sizeof header, "ferry container: signal %d (SIG%s) in '%s' (call %s); stack:\n",
                            sig, name ? name : "?", input->entry->name.c_str(), input->call_id.c_str())
            : std::snprintf(header, sizeof header, "ferry container: signal %d (SIG%s); stack:\n", sig,
                            name ? name : "?");
  write_text(header, n);
  void* raw[max_frames];
  const int count = backtrace(raw, max_frames);
  std::uintptr_t pcs[max_frames];
  // Frame 0 is this handler, frame 1 the signal trampoline (where the signal struck: an address, not a return
  // address); the others are return addresses, whose calls are the instruction before.
  for (int i = 1; i < count; ++i) pcs[i - 1] = reinterpret_cast<std::uintptr_t>(raw[i]) - (i > 2 ? 1 : 0);
  // (A crash while another thread symbolizes a throw must not wait for it.)
  if (symbols_mu.try_lock()) {
    static frame_list list;  // (static: the crashing thread may be short of stack; the lock guards it too)
    symbolize(pcs, count - 1, list);
    format_frames(list, write_text);
    symbols_mu.unlock();
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void record_throw_stacks() {
  read_settings();
  recording.store(true, std::memory_order_relaxed);
}

void print_stack_on_fatal_signals() {
  read_settings();
  void* warm_up[1];
  backtrace(warm_up, 1);  // loads libgcc's unwinder now, not in the signal handler
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, on_fatal_signal);
}

std::string last_throw_stack() {
  if (last.size <= 1) return {};
  // Frame 0 is the throw hook itself. The others are return addresses: the call is the instruction before.
  std::uintptr_t pcs[max_frames];
  int n = 0;
  for (int i = 1; i < last.size; ++i) pcs[n++] = reinterpret_cast<std::uintptr_t>(last.frames[i]) - 1;
  auto list = std::make_unique<frame_list>();
  {
    std::lock_guard lock(symbols_mu);
    symbolize(pcs, n, *list);
  }
  // (For a standard exception the first frames are __cxa_throw's callers inside libstdc++, such as
  // std::__throw_out_of_range_fmt: shown_frames keeps the last of them, the call the program made.)
  std::string out;
  format_frames(*list, [&out](const char* text, int len) { out.append(text, static_cast<std::size_t>(len)); });
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
