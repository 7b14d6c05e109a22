// What the calling thread is running right now: the ferry event loop it belongs to (if any) and the input
// it runs code for (in a container). Thread-local; each scope restores what was there before. The container
// layer sets it as it runs inputs; the runtime reads it (the parent of a nested call, cancellation, progress,
// where create_task runs) and sets the event loop of a program's own async entrypoint.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <ferry/detail/buffer.hpp>
#include <ferry/detail/function_entry.hpp>
#include <mutex>
#include <string>

namespace ferry::container {

/// One input a container runs: what cancellation and the stall watchdog need to know about it.
/// Shared between the threads that touch it; `cancelled` is the only mutable part, besides `next_hop`, which
/// only the thread running the body touches.
struct input_context {
  std::uint64_t input_id = 0;  // as the server knows this attempt
  std::string call_id;
  const detail::function_entry* entry = nullptr;  // the function the container serves; set for every input
  std::atomic<bool> cancelled{false};
  /// Set when the body returned a tail call that runs here, in this input's slot, instead of through the
  /// server: that call's encoded arguments (detail::hand_over sets it, the input runner takes it). Empty
  /// when there is none (encoded arguments never are).
  detail::buffer next_hop;
  /// Async inputs: the executor its coroutine runs on (tasks it creates run there too). Reset when the
  /// input ends, since that executor refers back to this context.
  boost::asio::any_io_executor executor;
  /// ferry::progress's coalescing: when it last sent an update (guarded by progress_mu).
  std::mutex progress_mu;
  std::chrono::steady_clock::time_point progress_sent{};
  /// What the body wrote through std::cout / std::cerr and has not ended with a newline yet (see
  /// container/output_capture.hpp), per stream; guarded by output_mu.
  std::mutex output_mu;
  std::string partial_line[2];
};

/// The input id of the input whose code runs on this thread, or 0 (outside a container's bodies): the
/// parent of the calls that code makes.
std::uint64_t current_input_id() noexcept;

/// The input whose code runs on this thread now, or nullptr.
input_context* current_input() noexcept;

/// Marks the calling thread as running code for `input` (nullptr: none) for the life of the scope.
class input_scope {
 public:
  explicit input_scope(input_context* input) noexcept;
  ~input_scope();
  input_scope(const input_scope&) = delete;
  input_scope& operator=(const input_scope&) = delete;

 private:
  input_context* previous_;
};

/// Marks the calling thread as a ferry event loop whose executor is `executor` (which must outlive the
/// scope) for the life of the scope: create_task starts tasks there, and blocking calls made on it are
/// warned about.
class event_loop_scope {
 public:
  explicit event_loop_scope(const boost::asio::any_io_executor& executor) noexcept;
  ~event_loop_scope();
  event_loop_scope(const event_loop_scope&) = delete;
  event_loop_scope& operator=(const event_loop_scope&) = delete;

 private:
  const boost::asio::any_io_executor* previous_;
};

/// The executor of the event loop the calling thread runs, or nullptr.
const boost::asio::any_io_executor* current_loop_executor() noexcept;

}  // namespace ferry::container
