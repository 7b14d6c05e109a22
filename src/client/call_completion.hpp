// What completes one pending call, whichever way its caller waits: a blocked thread, a callback, an Asio
// completion handler. The client keeps one per call in its pending_calls table and runs it once.
//
// Concurrency: an object; not synchronized. It is moved into the table by the calling thread and moved out
// and run by whichever thread ends the call (the I/O thread, or a thread that cancels it).
#pragma once

#include <cstddef>
#include <exception>
#include <ferry/detail/buffer.hpp>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace ferry::client {

/// A move-only `void(std::exception_ptr error, detail::buffer result)`, run at most once: the error is nullptr
/// on success, and then `result` is the encoded value. Callables of up to `inline_size` bytes that move without
/// throwing live inside it (a callback's std::function, an Asio handler and the executor it completes on, a
/// pointer to a blocked caller's slot), so a pending call costs no allocation of its own; larger ones are
/// boxed on the heap. Destroying one that never ran destroys the callable without running it.
class call_completion {
 public:
  static constexpr std::size_t inline_size = 9 * sizeof(void*);

  call_completion() noexcept = default;

  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, call_completion> &&
           std::is_invocable_v<std::remove_cvref_t<F>&, std::exception_ptr, detail::buffer>)
      // NOLINTNEXTLINE(bugprone-forwarding-reference-overload): the requires clause leaves out call_completion
      call_completion(F&& f) {  // NOLINT(google-explicit-constructor): any such callable is one
    using stored = std::remove_cvref_t<F>;
    if constexpr (fits_inline<stored>) {
      ::new (static_cast<void*>(storage_)) stored(std::forward<F>(f));
      ops_ = &ops_for<stored>;
    } else {
      using boxed = std::unique_ptr<stored>;
      ::new (static_cast<void*>(storage_)) boxed(std::make_unique<stored>(std::forward<F>(f)));
      ops_ = &boxed_ops_for<stored>;
    }
  }

  call_completion(call_completion&& other) noexcept : ops_(std::exchange(other.ops_, nullptr)) {
    if (ops_) ops_->relocate(storage_, other.storage_);
  }
  call_completion& operator=(call_completion&& other) noexcept {
    if (this != &other) {
      reset();
      ops_ = std::exchange(other.ops_, nullptr);
      if (ops_) ops_->relocate(storage_, other.storage_);
    }
    return *this;
  }
  call_completion(const call_completion&) = delete;
  call_completion& operator=(const call_completion&) = delete;
  ~call_completion() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }

  /// Runs the callable, which is destroyed afterwards (even when it throws); `*this` is empty then.
  /// Requires a callable.
  void operator()(std::exception_ptr error, detail::buffer result) && {
    const ops* o = std::exchange(ops_, nullptr);
    o->run_and_destroy(storage_, std::move(error), std::move(result));
  }

 private:
  struct ops {
    void (*run_and_destroy)(void* self, std::exception_ptr error, detail::buffer result);
    void (*relocate)(void* to, void* from) noexcept;  // moves `from` into `to`, and destroys `from`
    void (*destroy)(void* self) noexcept;
  };

  template <class T>
  static constexpr bool fits_inline =
      sizeof(T) <= inline_size && alignof(T) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<T>;

  template <class T>
  static T& as(void* p) noexcept {
    return *std::launder(static_cast<T*>(p));
  }

  template <class T>
  static constexpr ops ops_for{[](void* self, std::exception_ptr error, detail::buffer result) {
                                 struct destroy_after {
                                   T& f;
                                   ~destroy_after() { f.~T(); }
                                 } guard{as<T>(self)};
                                 guard.f(std::move(error), std::move(result));
                               },
                               [](void* to, void* from) noexcept {
                                 ::new (to) T(std::move(as<T>(from)));
                                 as<T>(from).~T();
                               },
                               [](void* self) noexcept { as<T>(self).~T(); }};

  template <class T>
  static constexpr ops boxed_ops_for{[](void* self, std::exception_ptr error, detail::buffer result) {
                                       std::unique_ptr<T> f = std::move(as<std::unique_ptr<T>>(self));
                                       as<std::unique_ptr<T>>(self).~unique_ptr();
                                       (*f)(std::move(error), std::move(result));
                                     },
                                     [](void* to, void* from) noexcept {
                                       ::new (to) std::unique_ptr<T>(std::move(as<std::unique_ptr<T>>(from)));
                                       as<std::unique_ptr<T>>(from).~unique_ptr();
                                     },
                                     [](void* self) noexcept { as<std::unique_ptr<T>>(self).~unique_ptr(); }};

  void reset() noexcept {
    if (const ops* o = std::exchange(ops_, nullptr)) o->destroy(storage_);
  }

  alignas(std::max_align_t) unsigned char storage_[inline_size];
  const ops* ops_ = nullptr;
};

}  // namespace ferry::client
