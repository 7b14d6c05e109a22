// The call graph (see call_graph.hpp).
#include "server/call_graph.hpp"

#include <msgpuck.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "server/apps.hpp"

namespace ferry::server {

using wire::status;

namespace {
/// Clears `flag` when the scope ends: the loops of settle and drop_if_unneeded are reentered through hooks.
struct reset_on_exit {
  bool& flag;
  ~reset_on_exit() { flag = false; }
};
}  // namespace

call_record& call_graph::add(std::unique_ptr<call_record> call) {
  call_record& in = *call;
  calls_.emplace(in.id, std::move(call));
  return in;
}

bool call_graph::add_argument(call_record& consumer, std::uint32_t position, call_record& dep) {
  consumer.deps.emplace_back(position, &dep);
  consumer.arguments_from.push_back(dep.call_id);
  ++dep.readers;
  if (dep.state != call_state::done) {
    dep.consumers.push_back(&consumer);
    ++consumer.unresolved;
    return true;
  }
  if (dep.outcome == status::ok) return true;
  fail_from_argument(consumer, dep, position);  // an argument that already failed
  return false;
}

void call_graph::start_when_ready(call_record& consumer) {
  if (consumer.state == call_state::waiting && consumer.unresolved == 0) make_ready(consumer);
}

void call_graph::make_ready(call_record& in) {
  if (!in.deps.empty()) {
    // Splice the argument calls' results into their placeholders, byte for byte.
    detail::buffer spliced;
    detail::reader r{in.arguments.view()};
    const char* start = r.pos;
    bool valid = !r.at_end() && mp_typeof(*r.pos) == MP_ARRAY && mp_check_array(r.pos, r.end) <= 0;
    const std::uint32_t n = valid ? mp_decode_array(&r.pos) : 0;
    spliced.append(start, static_cast<std::size_t>(r.pos - start));
    for (std::uint32_t i = 0; valid && i < n; ++i) {
      const char* element = r.pos;
      valid = detail::skip_value(r);
      auto dep = std::find_if(in.deps.begin(), in.deps.end(), [i](const auto& d) { return d.first == i; });
      if (dep == in.deps.end()) {
        spliced.append(element, static_cast<std::size_t>(r.pos - element));
      } else {
        spliced.append(dep->second->result.data(), dep->second->result.size());
      }
    }
    detach_from_deps(in);
    if (!valid) {
      return fail(in, {status::bad_arguments, "", "the arguments of '" + in.function->name + "' are malformed",
                       in.function->name, in.call_id, ""});
    }
    in.arguments = wire::payload(std::move(spliced));
  }
  host_.ready(in);
}

void call_graph::detach_from_deps(call_record& in) {
  auto deps = std::move(in.deps);
  in.deps.clear();
  std::vector<graph_id> ids;
  ids.reserve(deps.size());
  for (auto& [position, dep] : deps) {
    std::erase(dep->consumers, &in);
    --dep->readers;
    ids.push_back(dep->id);
  }
  // (By id: letting go of one may cancel and forget another among them.)
  for (graph_id id : ids) {
    if (call_record* dep = find(id)) let_go(*dep);
  }
}

void call_graph::let_go(call_record& in) {
  if (in.state == call_state::done) {
    maybe_forget(in);
  } else {
    drop_if_unneeded(in);  // (which forgets it, if it cancels it)
  }
}

void call_graph::await(call_record& in) {
  in.flags |= wire::deliver_result;
  if (in.state == call_state::done) {
    in.flags &= static_cast<std::uint8_t>(~wire::deliver_result);
    host_.deliver(in);
    maybe_forget(in);
  }
}

void call_graph::release(call_record& in) {
  in.flags &= static_cast<std::uint8_t>(~wire::keep_result);
  let_go(in);
}

void call_graph::caller_gone(call_record& in) {
  in.flags = 0;
  let_go(in);
}

namespace {
/// Whether drop_if_unneeded leaves `call` alone: it has ended or is being cancelled, it is a spawned call, or
/// something can still receive its result.
bool leave_alone(const call_record& call) {
  return call.state == call_state::done || call.durable || call.cancelled ||
         (call.flags & (wire::deliver_result | wire::keep_result)) || !call.consumers.empty();
}
}  // namespace

void call_graph::drop_if_unneeded(call_record& in) {
  if (leave_alone(in)) return;
  unneeded_.push_back(in.id);
  if (dropping_) return;  // the loop below, further up this stack, takes it
  dropping_ = true;
  reset_on_exit reset{dropping_};
  while (!unneeded_.empty()) {
    call_record* call = find(unneeded_.front());
    unneeded_.pop_front();
    if (!call || leave_alone(*call)) continue;
    spdlog::debug("call {} of '{}': nothing needs its result any more; cancelling it", call->call_id,
                  call->function->name);
    host_.unneeded(*call);
  }
}

void call_graph::fail(call_record& in, const wire::error_record& error) {
  detail::buffer payload;
  wire::encode_error(payload, error);
  complete(in, error.code, wire::payload(std::move(payload)));
}

void call_graph::complete(call_record& in, status outcome, wire::payload payload) {
  const call_state was = in.state;
  detach_from_deps(in);
  in.state = call_state::done;
  in.outcome = outcome;
  if (outcome != status::ok && payload.size() > wire::max_bounded_error_size) {
    // What is kept (in memory, in the history, in the store) and passed on stays bounded.
    wire::error_record error;
    try {
      error = wire::decode_error(payload.view());
    } catch (const DecodeError& e) {
      error = {outcome,
               "",
               std::string("the error record of '") + in.function->name + "' is malformed: " + e.what(),
               in.function->name,
               in.call_id,
               ""};
    }
    wire::bound_error(error);
    detail::buffer bounded;
    wire::encode_error(bounded, error);
    in.result = wire::payload(std::move(bounded));
  } else {
    in.result = std::move(payload);
  }
  in.arguments = {};
  host_.ended(in, was);
  settle(in);
}

void call_graph::settle(call_record& in) {
  if (settling_) {  // the loop below, further up this stack, takes it
    unsettled_.push_back(in.id);
    return;
  }
  settling_ = true;
  reset_on_exit reset{settling_};
  settle_now(in);
  while (!unsettled_.empty()) {
    const graph_id id = unsettled_.front();
    unsettled_.pop_front();
    if (call_record* call = find(id)) settle_now(*call);
  }
}

void call_graph::settle_now(call_record& in) {
  // Consumers go on (or fail, naming this call) now that its result exists. Each one that moves on stops
  // reading this call, which could forget it: hold a reader of our own until done.
  ++in.readers;
  auto consumers = std::move(in.consumers);
  in.consumers.clear();
  for (call_record* consumer : consumers) {
    if (consumer->state != call_state::waiting) continue;
    if (in.outcome != status::ok) {
      auto dep =
          std::find_if(consumer->deps.begin(), consumer->deps.end(), [&](const auto& d) { return d.second == &in; });
      fail_from_argument(*consumer, in, dep == consumer->deps.end() ? 0 : dep->first);
    } else if (--consumer->unresolved == 0) {
      make_ready(*consumer);
    }
  }
  if (in.flags & wire::deliver_result) {
    in.flags &= static_cast<std::uint8_t>(~wire::deliver_result);
    host_.deliver(in);
  }
  --in.readers;
  maybe_forget(in);
}

void call_graph::fail_from_argument(call_record& consumer, const call_record& dep, std::uint32_t position) {
  // The type, stack, function and call id stay those of the first failure; the message names this hop and
  // where the failure began, with the first failure's message once, whatever the chain's length.
  wire::error_record error = wire::decode_error(dep.result.view());
  consumer.failed_upstream = dep.failed_upstream + 1;
  consumer.first_failure =
      dep.first_failure ? dep.first_failure : std::make_shared<const std::string>(std::move(error.message));
  error.message = "argument " + std::to_string(position + 1) + " of '" + consumer.function->name +
                  "' comes from call " + dep.call_id + " of '" + dep.function->name + "', which failed";
  if (dep.failed_upstream > 0) {
    error.message += " because call " + error.call_id + " of '" + error.function + "', " +
                     plural(dep.failed_upstream, "call") + " further up its chain of arguments, failed";
  }
  error.message += ": " + *consumer.first_failure;
  fail(consumer, error);
}

void call_graph::maybe_forget(call_record& in) {
  if (in.state != call_state::done || in.readers > 0 || (in.flags & (wire::deliver_result | wire::keep_result))) {
    return;
  }
  forget(in);
}

void call_graph::forget(call_record& in) {
  host_.forgetting(in);
  calls_.erase(in.id);
  if (calls_.empty()) host_.emptied();
}

void call_graph::discard(call_record& in) { forget(in); }

void call_graph::hand_over(call_record& original, call_record& target) {
  target.caller_session = original.caller_session;
  target.caller_call_id = original.caller_call_id;
  target.flags = original.flags;
  if (original.durable) {
    // The spawned call's id now names the target, whose outcome is the spawned call's (and its hops too).
    target.durable = true;
    target.call_id = original.call_id;
    target.tail_hops += original.tail_hops;
  }
  for (call_record* consumer : original.consumers) {
    for (auto& dep : consumer->deps) {
      if (dep.second == &original) dep.second = &target;
    }
    if (target.state != call_state::done) target.consumers.push_back(consumer);
  }
  target.readers += original.readers;
  const bool target_done = target.state == call_state::done;
  auto consumers = std::move(original.consumers);
  original.consumers.clear();
  original.flags = 0;
  forget(original);
  if (target_done) {
    target.consumers = std::move(consumers);
    settle(target);
  }
}

}  // namespace ferry::server
