// The per-thread state of current.hpp.
#include "container/current.hpp"

namespace asio = boost::asio;

namespace ferry::container {

namespace {
thread_local input_context* running_input = nullptr;
thread_local const asio::any_io_executor* loop_executor = nullptr;
}  // namespace

input_context* current_input() noexcept { return running_input; }
std::uint64_t current_input_id() noexcept { return running_input ? running_input->input_id : 0; }

input_scope::input_scope(input_context* input) noexcept : previous_(running_input) { running_input = input; }
input_scope::~input_scope() { running_input = previous_; }

event_loop_scope::event_loop_scope(const asio::any_io_executor& executor) noexcept : previous_(loop_executor) {
  loop_executor = &executor;
}
event_loop_scope::~event_loop_scope() { loop_executor = previous_; }

const asio::any_io_executor* current_loop_executor() noexcept { return loop_executor; }

}  // namespace ferry::container
