/// ferry/errors.hpp: the exceptions ferry's public API throws.
///
/// Every failure of a remote call reaches the caller as an exception derived from ferry::Error, one type
/// per kind of failure, with what a user needs to debug it in what(): the function, the call id and,
/// for failures inside the body, the remote exception's type, message and stack. An exception of a
/// standard type thrown by a remote body is rethrown as that type (std::out_of_range stays
/// std::out_of_range); its remote details are reachable with ferry::remote_details(e).
/// All types are immutable after construction and safe to share between threads. docs/errors.md says when each
/// is thrown and what to do about it; each public header says which its calls throw.
#pragma once

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>

namespace ferry {

/// Base of every error ferry reports.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where a remote exception came from. Mixed into RemoteError and into the standard exception types
/// ferry rethrows, so `catch (const std::out_of_range& e)` still reaches these through remote_details().
class RemoteDetails {
 public:
  RemoteDetails(std::string type, std::string message, std::string function, std::string call_id, std::string stack)
      : type_(std::move(type)),
        message_(std::move(message)),
        function_(std::move(function)),
        call_id_(std::move(call_id)),
        stack_(std::move(stack)) {}
  RemoteDetails(const RemoteDetails&) = default;
  RemoteDetails(RemoteDetails&&) noexcept = default;
  RemoteDetails& operator=(const RemoteDetails&) = default;
  RemoteDetails& operator=(RemoteDetails&&) noexcept = default;
  virtual ~RemoteDetails() = default;

  /// The remote exception's type, demangled (`std::out_of_range`, `my::Error`).
  const std::string& type() const noexcept { return type_; }
  /// The remote exception's what().
  const std::string& message() const noexcept { return message_; }
  /// The function whose body threw.
  const std::string& function() const noexcept { return function_; }
  /// The id of the call that threw, as the server and its logs name it.
  const std::string& call_id() const noexcept { return call_id_; }
  /// The stack where the exception was thrown in the container, one frame a line.
  const std::string& stack() const noexcept { return stack_; }

 private:
  std::string type_, message_, function_, call_id_, stack_;
};

/// An exception of a type ferry does not rethrow as itself, thrown by a remote body.
class RemoteError : public Error, public RemoteDetails {
 public:
  RemoteError(const std::string& what, RemoteDetails details) : Error(what), RemoteDetails(std::move(details)) {}
};

/// The remote details of an exception that a remote body threw, or nullptr for a local exception.
inline const RemoteDetails* remote_details(const std::exception& e) noexcept {
  return dynamic_cast<const RemoteDetails*>(&e);
}

namespace detail {

/// An exception of type E that a remote body threw, rethrown in the caller: catchable as E, with the remote
/// details.
template <class E>
class remote_exception final : public E, public RemoteDetails {
 public:
  remote_exception(const std::string& what, RemoteDetails details) : E(what), RemoteDetails(std::move(details)) {}
};

/// Makes the exception a remote body threw, from its message and details.
using remote_exception_factory = std::exception_ptr (*)(const std::string& what, RemoteDetails details);
/// Rethrows remote exceptions of `type` through `make`. Thread-safe.
void register_remote_exception(const std::type_info& type, remote_exception_factory make);
/// A C++ name, demangled ("std::out_of_range" from typeid(std::out_of_range).name()); itself when it is not a
/// mangled name.
std::string demangle(const char* mangled);

}  // namespace detail

/// Makes an exception type of the program's own reach callers as itself, like the standard types: when a
/// remote body throws an E, `catch (const E&)` catches it in the caller, and ferry::remote_details(e) gives
/// where it came from. Without it, an E arrives as a ferry::RemoteError whose type() is E's name. E must
/// derive from std::exception, be constructible from its message (a std::string), and not be final.
/// Register it in every program that catches it (containers of the same binary included: in main before
/// app.main, or in a namespace-scope initializer). Thread-safe.
template <class E>
void register_exception() {
  static_assert(std::is_base_of_v<std::exception, E>, "ferry::register_exception: E must derive from std::exception");
  static_assert(std::is_constructible_v<E, const std::string&>,
                "ferry::register_exception: E must be constructible from its message, a std::string");
  static_assert(!std::is_final_v<E>, "ferry::register_exception: E must not be final (it is rethrown as a subclass)");
  detail::register_remote_exception(typeid(E), [](const std::string& what, RemoteDetails details) {
    return std::make_exception_ptr(detail::remote_exception<E>(what, std::move(details)));
  });
}

/// A value that does not decode as the type expected: names the expected and the received type, and
/// where in a nested value the mismatch is (`[2].name`).
class DecodeError : public Error {
 public:
  DecodeError(std::string expected, std::string received, std::string path = {})
      : Error(describe(expected, received, path)),
        expected_(std::move(expected)),
        received_(std::move(received)),
        path_(std::move(path)) {}
  const std::string& expected() const noexcept { return expected_; }
  const std::string& received() const noexcept { return received_; }
  const std::string& path() const noexcept { return path_; }
  /// The same error, one level further out: `prefix` goes before the current path.
  DecodeError within(const std::string& prefix) const { return {expected_, received_, prefix + path_}; }

 private:
  static std::string describe(const std::string& expected, const std::string& received, const std::string& path) {
    return (path.empty() ? std::string{} : "at " + path + ": ") + "expected " + expected + ", received " + received;
  }
  std::string expected_, received_, path_;
};

/// Arguments the function cannot take: a value that does not decode as the parameter's type, or the
/// wrong number of arguments. Says which function, which argument, what it expected and what it got.
class ArgumentError : public Error {
 public:
  using Error::Error;
};

/// The function is not declared by the app that was asked to run it.
class UnknownFunctionError : public Error {
 public:
  using Error::Error;
};

/// The container running the call died before answering (crash, kill, abort). what() carries its exit
/// status and the tail of its stderr.
class ContainerCrashedError : public Error {
 public:
  using Error::Error;
};

/// No container could be started for the function: the binary exited or failed before it connected to
/// the server. what() carries the exit status and the tail of its stderr.
class ContainerStartError : public Error {
 public:
  using Error::Error;
};

/// A payload (arguments or result) larger than the server accepts.
class PayloadTooLargeError : public Error {
 public:
  using Error::Error;
};

/// The call was cancelled: its awaiting coroutine was cancelled (gather cancelling a sibling, an Asio
/// cancellation signal), or the call was cancelled by id.
class CancelledError : public Error {
 public:
  using Error::Error;
};

/// An attempt of the call ran longer than the function's `timeout` (on its last attempt, when it has
/// retries). what() says how long the limit was and how many attempts were made.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// The server refused the call for lack of room: the function's queue holds as many inputs as the server
/// allows (`ferry server --max-queued-inputs`). Retry later; f.map waits and retries by itself.
class ResourceExhaustedError : public Error {
 public:
  using Error::Error;
};

/// FunctionCall::get(timeout) ran out of time: the call has not finished yet (it may still). Not a failure
/// of the call: get it again later.
class NotFinishedError : public Error {
 public:
  using Error::Error;
};

/// The call finished longer ago than the server keeps results (`ferry server --retention`).
class ResultExpiredError : public Error {
 public:
  using Error::Error;
};

/// No call with that id exists on the server (FunctionCall::from_id with a wrong id, or another server).
class UnknownCallError : public Error {
 public:
  using Error::Error;
};

/// Function<R(A...)>::from_name named a deployed function whose signature is not R(A...): nothing ran.
/// what() shows both signatures.
class SignatureMismatchError : public Error {
 public:
  using Error::Error;
};

/// The server cannot be reached, refused the connection (wrong token or protocol version), or the
/// connection was lost while calls were in flight.
class ConnectionError : public Error {
 public:
  using Error::Error;
};

}  // namespace ferry
