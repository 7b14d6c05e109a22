// A frame's payload kept after its frame handler returns (a call's arguments, its result), to be sent on.
//
// A payload that arrived in a buffer of its own (a large frame: connection.hpp) is kept by sharing that
// buffer, and a connection sends it from where it is (connection::send with a payload): the server passes
// a 64 MiB argument from its caller to a container, and a result back, without copying it. A small one is
// copied into a buffer the payload owns, which costs less than sharing. Immutable once made, so one may be
// sent on several connections (and again on a retry) while it is kept.
#pragma once

#include <cstddef>
#include <ferry/detail/buffer.hpp>
#include <memory>
#include <span>
#include <utility>

#include "wire/frame.hpp"

namespace ferry::wire {

class payload {
 public:
  payload() = default;
  /// Owns `bytes`.
  explicit payload(detail::buffer bytes) noexcept : owned_(std::move(bytes)) {}

  /// The payload of `f`: shared with the buffer it arrived in, if it had one of its own; otherwise copied.
  static payload keep(const frame& f) {
    if (!f.storage) return copy_of(f.payload);
    payload p;
    p.storage_ = f.storage;
    p.shared_ = f.payload;
    return p;
  }
  static payload copy_of(std::span<const char> bytes) {
    detail::buffer b;
    b.append(bytes.data(), bytes.size());
    return payload(std::move(b));
  }

  std::span<const char> view() const noexcept { return storage_ ? shared_ : owned_.view(); }
  const char* data() const noexcept { return view().data(); }
  std::size_t size() const noexcept { return view().size(); }
  bool empty() const noexcept { return size() == 0; }

  /// The buffer it shares (null when it owns its bytes): whoever sends it by reference holds this until
  /// the bytes are written.
  const std::shared_ptr<const detail::buffer>& storage() const noexcept { return storage_; }

 private:
  detail::buffer owned_;
  std::shared_ptr<const detail::buffer> storage_;
  std::span<const char> shared_;  // within *storage_
};

}  // namespace ferry::wire
