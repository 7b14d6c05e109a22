// The inputs of the one function a container serves: run, cancelled, and answered.
#pragma once

#include <cstdint>
#include <ferry/detail/function_entry.hpp>
#include <functional>
#include <memory>

#include "client/client.hpp"
#include "wire/protocol.hpp"

namespace ferry::container {

/// Where a runner's messages go (the container's client).
struct output_sender {
  /// Sends one input's output: its status and a writer of its payload (send_output).
  std::function<void(std::uint64_t input_id, wire::status status, const std::function<void(detail::buffer&)>& write)>
      output;
  /// Tells the server that input `input_id` went on here with a tail call of its own function, whose arguments
  /// are `arguments` (send_tail_hop): a retry of the input starts from them. Sent before that call's body runs.
  std::function<void(std::uint64_t input_id, const detail::buffer& arguments)> tail_hop;
};

/// Runs the inputs of one function: a blocking body's each on a thread (up to max_inputs), an async body's
/// each as a coroutine on one executor thread. Tracks every input from the moment it is submitted until
/// its output is sent, so a cancel finds it wherever it is: one cancelled before its body starts ends as
/// cancelled without running; a running blocking body sees ferry::cancelled(), an async one is cancelled at
/// its suspension point. A tail call of the same function (detail::hand_over) runs next in the input's slot,
/// as the same input, without a round trip through the server; the server hears of each such hop before its
/// body runs. Thread-safe: submit() and cancel() come from the client's I/O thread.
class input_runner {
 public:
  virtual ~input_runner() = default;

  /// The runner for `function` (which must outlive it).
  static std::unique_ptr<input_runner> make(const detail::function_entry& function);

  /// Inputs can arrive before the connection is up on the program's side (and before bodies could make nested
  /// calls through it): they are held, and start once the sender is set.
  virtual void set_sender(output_sender send) = 0;
  virtual void submit(client::input in) = 0;
  /// Does nothing for an input whose output has been sent.
  virtual void cancel(std::uint64_t input_id) = 0;
  /// The container is stopping: write out what is still held back.
  virtual void flush() = 0;
};

}  // namespace ferry::container
