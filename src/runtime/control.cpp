// Control requests from programs: spawned calls (spawn, get, cancel) and look-ups of deployed functions.
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <climits>
#include <ferry/function_call.hpp>

#include "runtime/process_client.hpp"

namespace ferry::detail {

buffer control_request(const std::string& verb, const std::string& subject, const std::function<void(buffer&)>& write,
                       const std::source_location& site) {
  auto c = runtime::require_client(verb + " " + subject);
  runtime::warn_if_blocking_on_loop(verb + " " + subject, site);
  return c->request(verb, subject, write);
}

Task<buffer> control_request_async(std::string verb, std::string subject, std::function<void(buffer&)> write) {
  auto c = runtime::require_client(verb + " " + subject);
  // Cancelling the await stops waiting for the answer; what was asked stands (a spawned call, a cancel).
  auto id = std::make_shared<std::uint64_t>(0);
  // (Named, not a temporary in the co_await expression: GCC 12 destroys those twice.)
  const std::function<void(client::call_callback)> start = [&](client::call_callback done) {
    *id = c->request_async(verb, subject, write, std::move(done));
  };
  const std::function<void()> abandon = [c, id] { c->abandon(*id); };
  const std::string cancelled = "awaiting " + verb + " " + subject + " was cancelled";
  co_return co_await runtime::await_io_completion(start, abandon, cancelled);
}

std::function<void(buffer&)> get_payload(std::chrono::milliseconds timeout) {
  const auto ms = static_cast<std::uint32_t>(std::clamp<std::int64_t>(timeout.count(), 0, UINT32_MAX));
  return [ms](buffer& out) { codec<std::uint32_t>::encode(out, ms); };
}

std::function<void(buffer&)> spawn_payload(const std::string& idempotency_key, const std::function<void(buffer&)>& args) {
  return [&idempotency_key, &args](buffer& out) {
    out.commit(mp_encode_array(out.reserve(5), 2));
    codec<std::string>::encode(out, idempotency_key);
    args(out);
  };
}

void rethrow_unless_call_exists(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const UnknownCallError&) {
    throw;
  } catch (const ConnectionError&) {
    throw;
  } catch (...) {  // not finished, expired, or failed: it exists
  }
}

std::string decode_string(const buffer& encoded) {
  reader r{encoded.view()};
  return ferry::decode<std::string>(r);
}

std::string deployed_signature(const std::string& app, const std::string& function, const std::source_location& site) {
  buffer answer = control_request("function", app + "." + function, {}, site);
  return decode_string(answer);
}

Task<std::string> deployed_signature_async(std::string app, std::string function) {
  buffer answer = co_await control_request_async("function", app + "." + function, {});
  co_return decode_string(answer);
}

void check_signature(const std::string& app, const std::string& function, const std::string& deployed,
                     const std::string& expected) {
  if (deployed != expected) {
    throw SignatureMismatchError("'" + app + "." + function + "' is deployed as " + deployed +
                                 ", but this program declares it as " + expected +
                                 ": use Function<...> with the deployed signature, or deploy the app again");
  }
}

}  // namespace ferry::detail
