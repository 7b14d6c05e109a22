// Control requests from programs: spawned calls (spawn, get, cancel) and look-ups of deployed functions.
#include <algorithm>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <climits>
#include <ferry/function.hpp>
#include <ferry/function_call.hpp>
#include <map>

#include "runtime/process_client.hpp"

namespace ferry::detail {

buffer control_request(control_verb verb, const std::string& subject, const std::function<void(buffer&)>& write,
                       const std::source_location& site) {
  const std::string what = std::string(name(verb)) + " " + subject;
  auto c = runtime::require_client(what);
  runtime::warn_if_blocking_on_loop(what, site);
  return c->request(verb, subject, write);
}

Task<buffer> control_request_async(control_verb verb, std::string subject, std::function<void(buffer&)> write) {
  struct request {
    std::shared_ptr<client::client> client;
    control_verb verb;
    std::string subject;
    std::function<void(buffer&)> write;
    std::uint64_t id = 0;
  } r{runtime::require_client(std::string(name(verb)) + " " + subject), verb, std::move(subject), std::move(write)};
  // (One reference each, so that the functions need no memory of their own. Named, not temporaries in the
  // co_await expression: GCC 12 destroys those twice.)
  const std::function<void(client::call_callback)> start = [&r](client::call_callback done) {
    r.id = r.client->request_async(r.verb, r.subject, r.write, std::move(done));
  };
  // Cancelling the await stops waiting for the answer; what was asked stands (a spawned call, a cancel).
  const std::function<std::string()> abandon = [&r] {
    r.client->abandon(r.id);
    return "awaiting " + std::string(name(r.verb)) + " " + r.subject + " was cancelled";
  };
  co_return co_await runtime::await_io_completion(start, abandon);
}

std::function<void(buffer&)> get_payload(std::chrono::milliseconds timeout) {
  const auto ms = static_cast<std::uint32_t>(std::clamp<std::int64_t>(timeout.count(), 0, UINT32_MAX));
  return [ms](buffer& out) { codec<std::uint32_t>::encode(out, ms); };
}

std::function<void(buffer&)> spawn_payload(const std::string& idempotency_key,
                                           const std::function<void(buffer&)>& args) {
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

namespace {
signature_description decode_signature(const buffer& encoded) {
  reader r{encoded.view()};
  auto [signature, structs] = ferry::decode<std::tuple<std::string, std::string>>(r);
  return {std::move(signature), std::move(structs)};
}

/// "shop::Order{...}" entries by name.
std::map<std::string, std::string> structs_by_name(const std::string& structs) {
  std::map<std::string, std::string> out;
  std::size_t start = 0;
  while (start < structs.size()) {
    // (Fields never contain ';': it separates structs.)
    const auto end = std::min(structs.find(';', start), structs.size());
    const std::string entry = structs.substr(start, end - start);
    const auto brace = entry.find('{');
    out[entry.substr(0, brace)] = brace == std::string::npos ? "" : entry.substr(brace);
    start = end + 1;
  }
  return out;
}
}  // namespace

signature_description deployed_signature(const std::string& app, const std::string& function,
                                         const std::source_location& site) {
  return decode_signature(control_request(control_verb::function, app + "." + function, {}, site));
}

Task<signature_description> deployed_signature_async(std::string app, std::string function) {
  buffer answer = co_await control_request_async(control_verb::function, app + "." + function, {});
  co_return decode_signature(answer);
}

void check_signature(const std::string& app, const std::string& function, const signature_description& deployed,
                     const signature_description& expected) {
  const std::string fix = ": use Function<...> with the deployed signature, or deploy the app again";
  if (deployed.signature != expected.signature) {
    throw SignatureMismatchError("'" + app + "." + function + "' is deployed as " + deployed.signature +
                                 ", but this program declares it as " + expected.signature + fix);
  }
  if (deployed.structs == expected.structs) return;
  // The same names, but some struct's fields differ: say which.
  const auto theirs = structs_by_name(deployed.structs);
  for (const auto& [name, fields] : structs_by_name(expected.structs)) {
    auto it = theirs.find(name);
    if (it != theirs.end() && it->second != fields) {
      throw SignatureMismatchError("'" + app + "." + function + "' is deployed as " + deployed.signature +
                                   " too, but its struct " + name + " is not this program's: deployed " + name +
                                   it->second + ", here " + name + fields + fix);
    }
  }
  throw SignatureMismatchError("'" + app + "." + function + "' is deployed as " + deployed.signature +
                               ", whose structs are " + deployed.structs + ", but this program's are " +
                               expected.structs + fix);
}

}  // namespace ferry::detail
