#include <cstdlib>
#include <ferry/errors.hpp>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "client/client.hpp"

namespace ferry::detail {

namespace {

class remote_bad_alloc final : public std::bad_alloc, public RemoteDetails {
 public:
  explicit remote_bad_alloc(RemoteDetails details) : RemoteDetails(std::move(details)) {}
};

template <class E>
std::exception_ptr make_remote(const std::string& what, RemoteDetails details) {
  return std::make_exception_ptr(remote_exception<E>(what, std::move(details)));
}

/// The exception types rethrown as themselves, by demangled name: the standard ones, ferry's own (a body's
/// nested call failed, and the body let the error through), and those the program registered.
class exception_registry {
 public:
  exception_registry() {
    add<std::runtime_error, std::logic_error, std::invalid_argument, std::domain_error, std::length_error,
        std::out_of_range, std::range_error, std::overflow_error, std::underflow_error>();
    add<Error, ArgumentError, UnknownFunctionError, ContainerCrashedError, ContainerStartError, PayloadTooLargeError,
        CancelledError, TimeoutError, ResourceExhaustedError, NotFinishedError, ResultExpiredError, UnknownCallError,
        SignatureMismatchError, ConnectionError>();
    factories_.emplace(demangle(typeid(std::bad_alloc).name()), [](const std::string&, RemoteDetails details) {
      return std::make_exception_ptr(remote_bad_alloc(std::move(details)));
    });
  }
  void add(const std::type_info& type, remote_exception_factory make) {
    std::lock_guard lock(mu_);
    factories_[demangle(type.name())] = make;
  }
  remote_exception_factory find(const std::string& type) {
    std::lock_guard lock(mu_);
    auto it = factories_.find(type);
    return it == factories_.end() ? nullptr : it->second;
  }

 private:
  template <class... E>
  void add() {
    (factories_.emplace(demangle(typeid(E).name()), &make_remote<E>), ...);
  }
  std::mutex mu_;
  std::unordered_map<std::string, remote_exception_factory> factories_;  // guarded by mu_
};

exception_registry& registry() {
  static exception_registry r;
  return r;
}

}  // namespace

void register_remote_exception(const std::type_info& type, remote_exception_factory make) {
  registry().add(type, make);
}

}  // namespace ferry::detail

namespace ferry::client {

std::exception_ptr call_error(wire::status status, const wire::error_record& error) {
  try {
    throw_call_error(status, error);
  } catch (...) {
    return std::current_exception();
  }
}

void throw_call_error(wire::status status, const wire::error_record& e) {
  if (status == wire::status::remote_exception) {
    RemoteDetails details(e.type, e.message, e.function, e.call_id, e.stack);
    if (auto make = detail::registry().find(e.type)) std::rethrow_exception(make(e.message, std::move(details)));
    throw RemoteError("'" + e.function + "' raised " + e.type + ": " + e.message + " (call " + e.call_id + ")",
                      std::move(details));
  }
  if (static_cast<std::uint8_t>(status) <= wire::last_status) {
    if (auto throw_error = wire::row(status).throw_error) throw_error(e.message);
  }
  throw Error("internal error in ferry: " + e.message);
}

}  // namespace ferry::client
