#include <ferry/errors.hpp>
#include <new>
#include <stdexcept>
#include <string>

#include "client/client.hpp"

namespace ferry::client {

namespace {

/// A standard exception type rethrown on the caller's side: catchable as itself, with remote details.
template <class E>
class remote_standard_exception : public E, public RemoteDetails {
 public:
  remote_standard_exception(const std::string& what, RemoteDetails details)
      : E(what), RemoteDetails(std::move(details)) {}
};

class remote_bad_alloc : public std::bad_alloc, public RemoteDetails {
 public:
  explicit remote_bad_alloc(RemoteDetails details) : RemoteDetails(std::move(details)) {}
};

template <class E>
[[noreturn]] void rethrow_as(const wire::error_record& e, RemoteDetails details) {
  throw remote_standard_exception<E>(e.message, std::move(details));
}

}  // namespace

std::exception_ptr call_error(wire::status status, const wire::error_record& error) {
  try {
    throw_call_error(status, error);
  } catch (...) {
    return std::current_exception();
  }
}

void throw_call_error(wire::status status, const wire::error_record& e) {
  switch (status) {
    case wire::status::remote_exception: {
      RemoteDetails details(e.type, e.message, e.function, e.call_id, e.stack);
      const std::string& t = e.type;
      if (t == "std::runtime_error") rethrow_as<std::runtime_error>(e, std::move(details));
      if (t == "std::logic_error") rethrow_as<std::logic_error>(e, std::move(details));
      if (t == "std::invalid_argument") rethrow_as<std::invalid_argument>(e, std::move(details));
      if (t == "std::domain_error") rethrow_as<std::domain_error>(e, std::move(details));
      if (t == "std::length_error") rethrow_as<std::length_error>(e, std::move(details));
      if (t == "std::out_of_range") rethrow_as<std::out_of_range>(e, std::move(details));
      if (t == "std::range_error") rethrow_as<std::range_error>(e, std::move(details));
      if (t == "std::overflow_error") rethrow_as<std::overflow_error>(e, std::move(details));
      if (t == "std::underflow_error") rethrow_as<std::underflow_error>(e, std::move(details));
      if (t == "std::bad_alloc") throw remote_bad_alloc(std::move(details));
      throw RemoteError("'" + e.function + "' raised " + e.type + ": " + e.message + " (call " + e.call_id + ")",
                        std::move(details));
    }
    case wire::status::bad_arguments:
      throw ArgumentError(e.message);
    case wire::status::unknown_function:
    case wire::status::unknown_app:
      throw UnknownFunctionError(e.message);
    case wire::status::container_crashed:
      throw ContainerCrashedError(e.message);
    case wire::status::container_start_failed:
      throw ContainerStartError(e.message);
    case wire::status::payload_too_large:
      throw PayloadTooLargeError(e.message);
    case wire::status::server_shutdown:
      throw ConnectionError(e.message);
    case wire::status::cancelled:
      throw CancelledError(e.message);
    case wire::status::timed_out:
      throw TimeoutError(e.message);
    case wire::status::resource_exhausted:
      throw ResourceExhaustedError(e.message);
    case wire::status::running:
      throw NotFinishedError(e.message);
    case wire::status::expired:
      throw ResultExpiredError(e.message);
    case wire::status::unknown_call:
      throw UnknownCallError(e.message);
    case wire::status::signature_mismatch:
      throw SignatureMismatchError(e.message);
    case wire::status::ok:
    case wire::status::internal:
    case wire::status::tail_call:  // never reaches a caller: the server resolves it
      break;
  }
  throw Error("internal error in ferry: " + e.message);
}

}  // namespace ferry::client
