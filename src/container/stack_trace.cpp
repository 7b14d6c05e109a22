#include "container/stack_trace.hpp"

#include <backtrace.h>
#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ferry/errors.hpp>
#include <string_view>
#include <typeinfo>

#include "runtime/current.hpp"

namespace ferry::container {

namespace {

constexpr int max_frames = 64;
constexpr int short_stack_frames = 16;

/// libbacktrace's state for this binary: made once at start (it must be, for a signal handler to use it).
backtrace_state* symbols = nullptr;
bool full_stacks = false;
const void* program_base = nullptr;  // where the executable (with libferry in it) is loaded
std::atomic<bool> recording{false};

struct throw_stack {
  void* frames[48];
  int size = 0;
};
thread_local throw_stack last;

void ignore_error(void*, const char*, int) {}  // a frame without symbols stays unnamed

void make_symbols() {
  if (symbols) return;
  symbols = backtrace_create_state(nullptr, /*threaded=*/1, ignore_error, nullptr);
  Dl_info self{};
  if (::dladdr(reinterpret_cast<const void*>(&make_symbols), &self)) program_base = self.dli_fbase;
  const char* full = std::getenv("FERRY_FULL_STACKS");
  full_stacks = full && std::strcmp(full, "0") != 0 && *full;
}

/// A frame, symbolized. Its strings belong to libbacktrace (which keeps them for the process's life) or to
/// the dynamic loader. Plain data: frames are collected in fixed arrays, in a signal handler too.
struct frame {
  std::uintptr_t pc = 0;
  const char* function = nullptr;  // mangled; nullptr when nothing names it
  const char* file = nullptr;      // nullptr without debug information
  int line = 0;
  bool in_program = false;  // in the executable, not in a shared library (libc, libstdc++, ...)
};

struct frame_list {
  frame frames[max_frames];
  int size = 0;
};

bool in_program(std::uintptr_t pc) {
  Dl_info info{};
  return ::dladdr(reinterpret_cast<void*>(pc), &info) && info.dli_fbase == program_base;
}

int add_frame(void* data, std::uintptr_t pc, const char* file, int line, const char* function) {
  auto& list = *static_cast<frame_list*>(data);
  if (list.size == max_frames) return 1;
  list.frames[list.size++] = {pc, function, file, line, in_program(pc)};
  return 0;
}

void name_from_symbol_table(void* data, std::uintptr_t, const char* symbol, std::uintptr_t, std::uintptr_t) {
  if (symbol) *static_cast<const char**>(data) = symbol;
}

/// Frames without debug information are named from the symbol tables (the executable's own, which names
/// static functions too, unlike the dynamic loader's).
void name_the_rest(frame_list& list) {
  for (int i = 0; i < list.size; ++i) {
    frame& f = list.frames[i];
    if (!f.function) backtrace_syminfo(symbols, f.pc, name_from_symbol_table, ignore_error, &f.function);
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

/// Writes a demangled name into `out` (size n); the mangled name when it does not demangle.
void demangle_into(const char* mangled, char* out, std::size_t n) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::strncpy(out, status == 0 && demangled ? demangled : mangled, n - 1);
  out[n - 1] = '\0';
  std::free(demangled);
}

/// The frames to show: in the short form, from the first of the user's (or the library function it called
/// last, such as abort or std::string::at) down to the body; all of them with FERRY_FULL_STACKS=1.
/// `names` holds each frame's demangled name. Returns [first, end).
std::pair<int, int> shown_frames(const frame_list& list, char (*names)[256]) {
  if (full_stacks) return {0, list.size};
  int first = 0;
  while (first < list.size && std::strcmp(names[first], "__restore_rt") == 0) ++first;  // the signal trampoline
  int program = first;
  while (program < list.size && !list.frames[program].in_program) ++program;
  if (program < list.size && program > first) first = program - 1;  // the library call the program made
  int end = first;
  while (end < list.size && !is_runtime(names[end])) ++end;
  if (end < list.size) {
    while (end > first + 1 && is_call_plumbing(names[end - 1])) --end;
  }
  return {first, end};
}

/// Formats frames [first, end) into `out`, one "  #i name at file:line" a line, through `emit(text, n)`.
template <class Emit>
void format_frames(const frame_list& list, char (*names)[256], int first, int end, Emit emit) {
  char line[512];
  int shown = 0;
  for (int i = first; i < end; ++i, ++shown) {
    if (!full_stacks && shown == short_stack_frames) {
      const int n = std::snprintf(line, sizeof line, "  ... %d more frames (FERRY_FULL_STACKS=1 shows them)\n",
                                  end - i);
      emit(line, n);
      return;
    }
    const frame& f = list.frames[i];
    const char* file = f.file;
    if (file && !full_stacks) {
      if (const char* slash = std::strrchr(file, '/')) file = slash + 1;
    }
    const int n = file ? std::snprintf(line, sizeof line, "  #%d %s at %s:%d\n", shown, names[i], file, f.line)
                       : std::snprintf(line, sizeof line, "  #%d %s\n", shown, names[i]);
    emit(line, std::min<int>(n, sizeof line - 1));
  }
}

void demangle_all(const frame_list& list, char (*names)[256]) {
  for (int i = 0; i < list.size; ++i) {
    if (list.frames[i].function) {
      demangle_into(list.frames[i].function, names[i], sizeof names[i]);
    } else {
      std::strcpy(names[i], "??");
    }
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
  const runtime::input_context* input = runtime::current_input();
  const int n = input ? std::snprintf(header, sizeof header, "ferry container: signal %d (SIG%s) in '%s' (call %s); stack:\n",
                                      sig, name ? name : "?", input->function.c_str(), input->call_id.c_str())
                      : std::snprintf(header, sizeof header, "ferry container: signal %d (SIG%s); stack:\n", sig,
                                      name ? name : "?");
  write_text(header, n);
  static frame_list list;  // (static: a deep stack's signal handler may run short of stack)
  static char names[max_frames][256];
  list.size = 0;
  backtrace_full(symbols, /*skip=*/1, add_frame, ignore_error, &list);  // (skips this handler)
  name_the_rest(list);
  demangle_all(list, names);
  const auto [first, end] = shown_frames(list, names);
  format_frames(list, names, first, end, write_text);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void record_throw_stacks() {
  make_symbols();
  recording.store(true, std::memory_order_relaxed);
}

void print_stack_on_fatal_signals() {
  make_symbols();
  void* warm_up[1];
  backtrace(warm_up, 1);  // loads libgcc's unwinder now, not in the signal handler
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, on_fatal_signal);
}

std::string last_throw_stack() {
  if (last.size <= 1 || !symbols) return {};
  frame_list list;
  // Frame 0 is the throw hook itself. The others are return addresses: the call is the instruction before.
  for (int i = 1; i < last.size && list.size < max_frames; ++i) {
    const auto pc = reinterpret_cast<std::uintptr_t>(last.frames[i]) - 1;
    const int before = list.size;
    backtrace_pcinfo(symbols, pc, add_frame, ignore_error, &list);  // (inlined functions: several frames)
    if (list.size == before) add_frame(&list, pc, nullptr, 0, nullptr);
  }
  name_the_rest(list);
  char names[max_frames][256];
  demangle_all(list, names);
  // (The first frames are __cxa_throw's callers inside libstdc++ for a standard exception, such as
  // std::__throw_out_of_range_fmt: shown_frames keeps the last of them, the call the program made.)
  const auto [first, end] = shown_frames(list, names);
  std::string out;
  format_frames(list, names, first, end, [&out](const char* text, int n) { out.append(text, static_cast<std::size_t>(n)); });
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
