// The newest calls that ended, kept in memory for the HTTP API and the dashboard (recent calls, a call's
// detail, its graph). A ring of fixed size whose slots are reused, so that recording a call allocates
// nothing once the ring has filled. Internal: confined to the server's thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wire/protocol.hpp"

namespace ferry::server {

/// A call as observers see it: live (from its call record) or ended (from the history).
struct call_summary {
  std::string call_id;
  std::string app;
  std::string function;
  std::string state;  // waiting, queued, running, succeeded, failed, cancelled, tail_called
  double created_at = 0;
  double ended_at = 0;  // 0 while live
  int attempts = 0;
  std::uint32_t tail_hops = 0;  // tail calls of its own function its body took in its container
  std::uint64_t container_id = 0;
  wire::status outcome = wire::status::ok;
  std::string error_type;     // when failed
  std::string error_message;  // when failed or cancelled
  std::string parent;         // the call whose body made this one
  std::vector<std::string> arguments_from;
  std::string tail_call;  // the call this one's body handed its result to
  bool has_progress = false;
  double progress_done = 0;
  double progress_total = 0;
  std::string progress_message;
};

class call_history {
 public:
  /// (The slots are made as calls end, so that an idle server does not hold a full ring's memory.)
  explicit call_history(std::size_t capacity = 10'000) : capacity_(capacity) { slots_.reserve(capacity); }

  /// The slot the next ended call is written into (the oldest one, once full): assign every field.
  call_summary& next_slot();

  /// The ended call `call_id`, or nullptr once it has left the window.
  const call_summary* find(const std::string& call_id) const;

  /// Ended calls, newest first.
  template <class Visit>
  void for_each_newest_first(Visit&& visit) const {
    for (std::size_t i = 0; i < size_; ++i) {
      if (!visit(slots_[(next_ + slots_.size() - 1 - i) % slots_.size()])) return;
    }
  }

 private:
  std::size_t capacity_;
  std::vector<call_summary> slots_;  // grows to capacity_, then its slots are reused
  std::size_t next_ = 0;             // the slot written next, once full
  std::size_t size_ = 0;
};

}  // namespace ferry::server
