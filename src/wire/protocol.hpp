// The messages of ferry's wire protocol (docs/protocol.md is the reference; keep the two in step).
//
// A frame is a 4-byte little-endian length N followed by N bytes: a MessagePack array whose first element
// is the message kind and whose other elements are the kind's header fields, then the payload, which is
// the rest of the frame. Payloads (arguments, results, error records) are MessagePack values that the
// server forwards without decoding.
#pragma once

#include <chrono>
#include <cstdint>
#include <ferry/codec.hpp>
#include <ferry/errors.hpp>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "wire/positional.hpp"

namespace ferry::wire {

inline constexpr std::uint32_t protocol_version = 4;
/// The default upper bound of a frame a program sends; the server announces its own in `welcome`.
inline constexpr std::uint64_t default_max_frame_size = 256ull << 20;
/// The largest limit a 4-byte length prefix allows, less room for headers.
inline constexpr std::uint64_t max_max_frame_size = (1ull << 32) - 1 - (1 << 16);
/// The largest frame a peer may send before its hello is accepted (a hello is a few hundred bytes), so that
/// a connection that has not shown the token cannot make the server set aside room for a large frame.
inline constexpr std::uint64_t max_hello_frame_size = 64 << 10;
/// Receivers accept this much beyond the announced limit: the server forwards payloads under headers
/// a little longer than the ones they arrived with (a call id, a function name).
inline constexpr std::uint64_t header_allowance = 4096;

enum class message_kind : std::uint8_t {
  hello = 1,           // peer -> server, first frame: who is connecting, with the token
  welcome = 2,         // server -> peer: accepted
  refused = 3,         // server -> peer: not accepted; the server closes the connection after it
  register_app = 4,    // client -> server: the app this program runs and its functions
  app_registered = 5,  // server -> client: the registration is in place
  call = 6,            // caller -> server: run a function
  result = 7,          // server -> caller: a call's value or error
  input = 8,           // server -> container: run an input
  output = 9,          // container -> server: an input's value or error
  cancel = 10,         // caller -> server: cancel a call the caller made (it no longer waits for it)
  cancel_input = 11,   // server -> container: cancel an input it runs
  await_call = 12,     // caller -> server: send me the result of this call after all
  release = 13,        // caller -> server: I will not await or pass this call any more
  request = 14,   // client -> server: a control request (deploy, look up, spawn, list, ...): see detail::control_verb
  reply = 15,     // server -> client: its answer
  log = 16,       // server -> client: a line a container wrote, for a call the client made or follows
  progress = 17,  // container -> server: how far an input has got (ferry::progress)
  // Between the server and its agents (`ferry agent`), which start containers on their hosts:
  agent_ready = 18,       // agent -> server, after the welcome: the host and what it offers
  launch = 19,            // server -> agent: start a container
  launched = 20,          // agent -> server: it started (its pid)
  signal_container = 21,  // server -> agent: send a container a signal (SIGTERM to stop, SIGKILL)
  container_output = 22,  // agent -> server: a chunk a container wrote to stdout or stderr
  container_exited = 23,  // agent -> server: a container's process ended (or could not start)
  fetch_binary = 24,      // agent -> server: send me a piece of the binary with this digest
  binary_chunk = 25,      // server -> agent: that piece
  heartbeat = 26,         // agent <-> server: still here (connection::keep_alive)
  container_stats = 27,   // agent -> server: what its containers use
  drain_output = 28,      // server -> agent: send what a container has written so far, then output_drained
  output_drained = 29,    // agent -> server: it has (every container_output before this one)
  tail_hop = 30,          // container -> server: an input goes on here with a tail call of its own function
};
inline constexpr std::uint8_t last_message_kind = static_cast<std::uint8_t>(message_kind::tail_hop);

/// What a `request` asks for; its `subject` and payload, and the reply's payload on success:
///   containers  -                     -> vector<container_row>
///   apps        -                     -> vector<app_row>
///   calls       -, [app, function, status ("": any), limit u32] (or no payload: all, 100)
///                                     -> vector<call_row> (recent spawned calls, newest first)
///   function    "app.fn"              -> [signature str, structs str] (function_entry::structs)
///   deploy      app name, [specs, bin executable, the name the binary declares, arguments vector<str>]
///                                     -> digest str
///   stop        app name              -> nil
///   spawn       "app.fn", [idempotency key str, arguments] -> call id str (once stored)
///   get         call id, [timeout ms] -> the call's value (or its error; `running` when it has not finished)
///   cancel      call id               -> nil
///   logs        app name, [call id or "", follow bool] -> vector<log_row> (the lines kept); with follow,
///                                     `log` frames follow for every new line until the connection closes

/// call flags: what the caller wants done with the result.
inline constexpr std::uint8_t deliver_result = 1;  // send it in a `result` when the call ends
inline constexpr std::uint8_t keep_result = 2;     // keep it (for await_call, or to feed later calls) until `release`

enum class peer_role : std::uint8_t { client = 0, container = 1, agent = 2 };

/// The outcome of a call. Anything but `ok` carries an error_record as its payload. What each means to
/// the rest of ferry (its name, the HTTP API's status, the exception a caller gets, whether it is retried)
/// is status_table's.
enum class status : std::uint8_t {
  ok = 0,
  remote_exception = 1,
  bad_arguments = 2,
  unknown_function = 3,
  unknown_app = 4,
  container_crashed = 5,
  container_start_failed = 6,
  payload_too_large = 7,
  server_shutdown = 8,
  internal = 9,
  cancelled = 10,
  tail_call = 11,
  timed_out = 12,
  resource_exhausted = 13,
  running = 14,
  expired = 15,
  unknown_call = 16,
  signature_mismatch = 17,
};
inline constexpr std::uint8_t last_status = static_cast<std::uint8_t>(status::signature_mismatch);

/// Throws the exception a caller gets for a failure: E(message).
template <typename E>
[[noreturn]] void raise(const std::string& message) {
  throw E(message);
}

/// What a status means, for everyone who handles one. The one place that says it: the client throws
/// `raise`, the HTTP API answers `http`, the server retries a failed attempt when `retried`, and
/// docs/http-api.md's table of codes is checked against this one.
struct status_row {
  status code;
  const char* name;  // in the HTTP API's JSON errors, the CLI's output, the dashboard
  unsigned http;     // the HTTP API's status for a call or a request that ends with it
  /// Whether a failed attempt with this status is worth another, under the function's retry policy.
  bool retried;
  /// Throws what the caller of a call that ends with this status gets; nullptr where none does (ok, and
  /// tail_call, which the server resolves; remote_exception, thrown as the body's own type where it can be).
  void (*throw_error)(const std::string& message);
  const char* meaning;
};

inline constexpr status_row status_table[] = {
    {status::ok, "ok", 200, false, nullptr, "the call returned a value"},
    {status::remote_exception, "remote_exception", 500, true, nullptr, "the body threw"},
    {status::bad_arguments, "bad_arguments", 400, false, raise<ArgumentError>,
     "the arguments do not decode as the parameters"},
    {status::unknown_function, "unknown_function", 404, false, raise<UnknownFunctionError>,
     "the app does not declare the function"},
    {status::unknown_app, "unknown_app", 404, false, raise<UnknownFunctionError>, "no such app on the server"},
    {status::container_crashed, "container_crashed", 502, true, raise<ContainerCrashedError>,
     "the container died with the input in flight"},
    {status::container_start_failed, "container_start_failed", 502, false, raise<ContainerStartError>,
     "no container could be started"},
    {status::payload_too_large, "payload_too_large", 413, false, raise<PayloadTooLargeError>,
     "a frame over the server's limit"},
    {status::server_shutdown, "server_shutdown", 503, false, raise<ConnectionError>,
     "the server stopped before the call finished"},
    {status::internal, "internal", 500, false, nullptr, "a bug in ferry: the message says where"},
    {status::cancelled, "cancelled", 409, false, raise<CancelledError>, "the call was cancelled"},
    {status::tail_call, "tail_call", 500, false, nullptr,
     "(output only) the body returned a future: the payload is its call id"},
    {status::timed_out, "timed_out", 504, true, raise<TimeoutError>,
     "an attempt ran longer than the function's timeout"},
    {status::resource_exhausted, "resource_exhausted", 429, false, raise<ResourceExhaustedError>,
     "the function's queue is full: retry later"},
    {status::running, "running", 202, false, raise<NotFinishedError>, "(reply to get) the call has not finished yet"},
    {status::expired, "expired", 410, false, raise<ResultExpiredError>,
     "(reply to get) the call's result is no longer kept"},
    {status::unknown_call, "unknown_call", 404, false, raise<UnknownCallError>, "no call with that id"},
    {status::signature_mismatch, "signature_mismatch", 409, false, raise<SignatureMismatchError>,
     "the caller's signature of a deployed function is not the deployed one"},
};
static_assert(std::size(status_table) == last_status + 1, "a status without its row in status_table");
static_assert(
    [] {
      for (std::size_t i = 0; i < std::size(status_table); ++i) {
        if (static_cast<std::size_t>(status_table[i].code) != i) return false;
      }
      return true;
    }(),
    "status_table's rows are in the enum's order");

/// The row of `s` (a status a peer sent is checked against last_status first).
constexpr const status_row& row(status s) { return status_table[static_cast<std::uint8_t>(s)]; }

/// Why a call failed, as it travels from where it failed to the caller: the payload of a failed result,
/// output or reply.
struct error_record {
  status code = status::internal;
  std::string type;  // the remote exception's type, for remote_exception
  std::string message;
  std::string function;
  std::string call_id;
  std::string stack;  // the remote stack, for remote_exception
  FERRY_WIRE_FIELDS(error_record, code, type, message, function, call_id, stack);
};

/// The rule for app and function names, which `APP.FUNCTION` (the CLI, the HTTP API's paths) must be able to
/// tell apart: 1 to 128 letters, digits, '-' and '_'.
bool valid_name(std::string_view name);
inline constexpr const char* name_rule =
    "1 to 128 letters, digits, '-' and '_' (no '.', which separates app and function)";

/// What is wrong with what a function asks of its containers' hosts (FunctionOptions::cpu, memory_mb, gpus,
/// placement), or "". Programs check it when a function is declared, the server when one is registered.
std::string resources_problem(double cpu, std::int64_t memory_mb, std::int64_t gpus, std::string_view placement);

/// The most of an error's message and of its stack that travel and are kept. A body's exception may say
/// anything at any length, and an error passed along a chain of calls must not grow with the chain.
inline constexpr std::size_t max_error_message_size = std::size_t{8} * 1024;
inline constexpr std::size_t max_error_stack_size = std::size_t{16} * 1024;
/// An encoded error record longer than this may hold more than those bounds allow (see bound_error).
inline constexpr std::size_t max_bounded_error_size = std::size_t{32} * 1024;

/// Cuts `e`'s message and stack to the bounds above (at a UTF-8 character boundary), saying how much was cut.
/// Returns whether anything was cut.
bool bound_error(error_record& e);

// The messages' headers and the rows of replies, each a struct whose fields travel in declaration order, after
// the kind, as a MessagePack array (see positional.hpp; docs/protocol.md names the fields as they are named
// here). Statuses and streams travel as integers, and a value their enum does not name is a malformed frame.

/// peer -> server, the first frame: who connects, with the server's token.
struct hello_header {
  std::uint32_t protocol;  // protocol_version
  std::string token;
  /// A peer_role, as a byte: the hello is read before its protocol version is checked, so that a peer of
  /// another version, whatever roles it knows, is told about the version.
  std::uint8_t role;
  std::uint64_t container_id;  // FERRY_CONTAINER_ID for a container; 0 from a program
  std::int64_t pid;
  FERRY_WIRE_FIELDS(hello_header, protocol, token, role, container_id, pid);
};

/// server -> peer: the hello is accepted; frames up to `max_frame_size` bytes are welcome.
struct welcome_header {
  std::string server_version;
  std::uint64_t max_frame_size;
  FERRY_WIRE_FIELDS(welcome_header, server_version, max_frame_size);
};

/// server -> peer: the hello is not accepted, and why; the server closes the connection after it.
struct refused_header {
  std::string reason;
  FERRY_WIRE_FIELDS(refused_header, reason);
};

/// How a function's failed attempts are retried.
struct retry_spec {
  std::int32_t max_retries;
  std::uint32_t initial_delay_ms;
  double backoff_coefficient;
  std::uint32_t max_delay_ms;
  FERRY_WIRE_FIELDS(retry_spec, max_retries, initial_delay_ms, backoff_coefficient, max_delay_ms);
};

/// A function of an app as its program declares it: its signature and how it runs.
struct function_spec {
  std::string name;
  std::string signature;
  std::int32_t max_inputs;  // at once, per container
  std::int32_t max_containers;
  std::uint32_t timeout_ms;  // of one attempt; 0: none
  retry_spec retries;
  std::int32_t min_containers;
  std::int32_t buffer_containers;
  std::uint32_t scaledown_window_ms;
  std::string structs;  // the fields of the structs the signature mentions (function_entry::structs)
  // What each container needs of its host (FunctionOptions::cpu ...). Added after the fields above: a
  // program or a stored deployment from before sends none, and asks for nothing.
  double cpu = 0;
  std::uint64_t memory_mb = 0;
  std::uint32_t gpus = 0;
  std::string placement;
  static constexpr std::size_t required_fields = 10;
  FERRY_WIRE_FIELDS(function_spec, name, signature, max_inputs, max_containers, timeout_ms, retries, min_containers,
                    buffer_containers, scaledown_window_ms, structs, cpu, memory_mb, gpus, placement);
};

/// client -> server: the app this program runs and its functions. `arguments` are the program's own
/// (argv[1] on); its containers are started with them.
struct register_app_header {
  std::string app;
  std::string executable;
  std::vector<function_spec> functions;
  std::vector<std::string> arguments;
  FERRY_WIRE_FIELDS(register_app_header, app, executable, functions, arguments);
};

/// server -> client: whether the registration is in place; an error record follows unless `status` is ok.
struct app_registered_header {
  wire::status status;
  FERRY_WIRE_FIELDS(app_registered_header, status);
};

/// A call's argument that is another call's result: the argument's position (whose value in the payload is
/// a nil placeholder) and that call's id, in the caller's numbering.
struct dependency {
  std::uint32_t position;
  std::uint64_t call_id;
  FERRY_WIRE_FIELDS(dependency, position, call_id);
};

/// caller -> server: run `app`.`function`; the payload is the arguments. A container names the attempt whose
/// body makes the call, so that the server knows the call's parent; 0 from a program.
struct call_header {
  std::uint64_t call_id;  // the caller's numbering, echoed in the result
  std::string app;
  std::string function;
  std::uint8_t flags;  // deliver_result | keep_result
  std::vector<dependency> deps;
  std::uint64_t parent_attempt_id;  // the wire called it "parent input id"
  FERRY_WIRE_FIELDS(call_header, call_id, app, function, flags, deps, parent_attempt_id);
};

/// server -> caller: call `call_id` ended; the payload is its value, or an error record unless `status` is ok.
struct result_header {
  std::uint64_t call_id;
  wire::status status;
  FERRY_WIRE_FIELDS(result_header, call_id, status);
};

/// server -> container: run attempt `attempt_id` of the call the server knows as `call_id`; the payload is
/// the arguments.
struct input_header {
  std::uint64_t attempt_id;  // the server's numbering of attempts; the wire called it "input id"
  std::string call_id;       // "fc-" and 16 hex digits, for error records and logs
  FERRY_WIRE_FIELDS(input_header, attempt_id, call_id);
};

/// container -> server: attempt `attempt_id` ended; the payload is its value, or an error record unless
/// `status` is ok (or, for tail_call, the id of the call whose result is the attempt's).
struct output_header {
  std::uint64_t attempt_id;
  wire::status status;
  FERRY_WIRE_FIELDS(output_header, attempt_id, status);
};

/// caller -> server: cancel call `call_id`; the caller no longer waits for it.
struct cancel_header {
  std::uint64_t call_id;
  FERRY_WIRE_FIELDS(cancel_header, call_id);
};

/// server -> container: cancel attempt `attempt_id`, which the container runs.
struct cancel_input_header {
  std::uint64_t attempt_id;
  FERRY_WIRE_FIELDS(cancel_input_header, attempt_id);
};

/// caller -> server: send the result of call `call_id` (made without deliver_result) after all.
struct await_call_header {
  std::uint64_t call_id;
  FERRY_WIRE_FIELDS(await_call_header, call_id);
};

/// caller -> server: the caller will not await or pass call `call_id` any more; its kept result may go.
struct release_header {
  std::uint64_t call_id;
  FERRY_WIRE_FIELDS(release_header, call_id);
};

/// client -> server: a control request (see the verbs above); the payload is its arguments.
struct request_header {
  std::uint64_t request_id;  // the client's numbering, echoed in the reply
  std::string verb;
  std::string subject;
  FERRY_WIRE_FIELDS(request_header, request_id, verb, subject);
};

/// server -> client: the answer to request `request_id`, or an error record unless `status` is ok.
struct reply_header {
  std::uint64_t request_id;
  wire::status status;
  FERRY_WIRE_FIELDS(reply_header, request_id, status);
};

/// container -> server: attempt `attempt_id`'s body returned a tail call of the function it runs, which the
/// container runs next as the same attempt; the payload is that call's encoded arguments (what a retry of
/// the attempt's call runs from now on). Sent before the hop's body runs.
struct tail_hop_header {
  std::uint64_t attempt_id;
  FERRY_WIRE_FIELDS(tail_hop_header, attempt_id);
};

/// container -> server: how far attempt `attempt_id` has got (ferry::progress).
struct progress_header {
  std::uint64_t attempt_id;
  double done;
  double total;
  std::string message;
  FERRY_WIRE_FIELDS(progress_header, attempt_id, done, total, message);
};

/// A function of a deployed app, in an app_row.
struct app_function {
  std::string name;
  std::string signature;
  FERRY_WIRE_FIELDS(app_function, name, signature);
};

/// One row of the "apps" request: a deployed app and its functions.
struct app_row {
  std::string app;
  std::string digest;  // the SHA-256 of its binary, in hex
  double deployed_at;  // unix s
  std::vector<app_function> functions;
  FERRY_WIRE_FIELDS(app_row, app, digest, deployed_at, functions);
};

/// One row of the "calls" request: a spawned call.
struct call_row {
  std::string call_id;
  std::string app;
  std::string function;
  std::string status;  // "pending", or the status's name once it ended
  double created;      // unix s
  double duration_s;   // -1 while unfinished
  FERRY_WIRE_FIELDS(call_row, call_id, app, function, status, created, duration_s);
};

/// One row of the "containers" request.
struct container_row {
  std::uint64_t id;
  std::string app;
  std::string function;
  std::string state;  // "starting", "ready", "stopping"; "waiting" for a host (no id yet: 0)
  std::uint32_t inputs_in_flight;
  std::int64_t pid;
  double uptime_s;
  std::uint64_t rss_bytes;
  std::string waiting_for;  // why it waits for a host (added later: optional)
  static constexpr std::size_t required_fields = 8;
  FERRY_WIRE_FIELDS(container_row, id, app, function, state, inputs_in_flight, pid, uptime_s, rss_bytes, waiting_for);
};

/// A line a container wrote to stdout or stderr, tagged with the call it wrote it for ("" when unknown);
/// the header of a `log` message, and a row of the "logs" request.
enum class log_stream : std::uint8_t { stdout_stream = 1, stderr_stream = 2 };
/// A container's line written through the standard streams reaches its stdout or stderr pipe as
/// "<log_tag><attempt id><log_tag><text>\n", naming the attempt it was written for.
inline constexpr char log_tag = '\x1f';
struct log_row {
  std::uint64_t seq;
  double time;  // unix s
  std::string app;
  std::string function;
  std::string call_id;
  log_stream stream;
  std::string text;  // without its newline
  FERRY_WIRE_FIELDS(log_row, seq, time, app, function, call_id, stream, text);
};

/// agent -> server, the first frame after the welcome: the host the agent runs on and what it offers its
/// containers. Resources come from the Slurm allocation when the agent runs under Slurm, else from the host.
struct agent_ready_header {
  std::string name;  // the host's name (SLURMD_NODENAME under Slurm), or --name
  std::uint32_t cpus;
  std::uint64_t memory_mb;
  std::uint32_t gpus;
  std::vector<std::string> labels;  // free-form: Slurm features, node labels (--label)
  std::string slurm_job_id;         // SLURM_JOB_ID when it runs in a Slurm job; "" otherwise
  /// Its job was submitted by the server (`--agents slurm`), which cancels it when idle; a restarted server
  /// adopts it. False for an agent a user started (in an allocation of theirs, which is not the server's).
  bool server_job = false;
  FERRY_WIRE_FIELDS(agent_ready_header, name, cpus, memory_mb, gpus, labels, slurm_job_id, server_job);
};

/// server -> agent: start container `container_id` running the binary whose SHA-256 is `digest` (fetched
/// with fetch_binary unless the agent has it, in its cache or at `executable` on a shared filesystem), with
/// `arguments`, serving `app`.`function`. The container connects to the server at the address the agent
/// reached it on, presenting `credential` (given to it in its environment, never on its command line).
struct launch_header {
  std::uint64_t container_id;
  std::string credential;
  std::string digest;
  std::string executable;  // where the binary is on the server's host
  std::vector<std::string> arguments;
  std::string app;
  std::string function;
  std::vector<std::uint32_t> gpus;  // the host's GPUs it may use, by index in the agent's list (not its ids)
  FERRY_WIRE_FIELDS(launch_header, container_id, credential, digest, executable, arguments, app, function, gpus);
};

/// agent -> server: container `container_id` started as process `pid` on the agent's host.
struct launched_header {
  std::uint64_t container_id;
  std::int64_t pid;
  FERRY_WIRE_FIELDS(launched_header, container_id, pid);
};

/// server -> agent: send container `container_id` signal `signal` (15: stop, SIGTERM; 9: kill, SIGKILL).
struct signal_container_header {
  std::uint64_t container_id;
  std::int32_t signal;
  FERRY_WIRE_FIELDS(signal_container_header, container_id, signal);
};

/// agent -> server: container `container_id` wrote the payload to `stream`, in order per stream.
struct container_output_header {
  std::uint64_t container_id;
  log_stream stream;
  FERRY_WIRE_FIELDS(container_output_header, container_id, stream);
};

/// server -> agent, and the agent's answer: `drain_output` asks it to read what container `container_id`
/// has written to its pipes so far and send it (container_output); `output_drained` says it has. The server
/// holds a remote container's outputs (results) until then, so that the lines a body wrote before it
/// returned reach the caller before its result, as they do from a container on the server's host.
struct drain_output_header {
  std::uint64_t container_id;
  FERRY_WIRE_FIELDS(drain_output_header, container_id);
};

/// agent -> server: container `container_id`'s process ended, `how` ("exited with code 3"), killed by
/// `signal` (0: it exited); or, with `started` false, it could not be started at all (`how` says why). All
/// it wrote has been sent before this. `host_lost`: the agent stopped it because the agent is stopping (a
/// scancel, a node drained): not the container's fault, and the agent takes no more containers.
struct container_exited_header {
  std::uint64_t container_id;
  std::string how;
  std::int32_t signal;
  bool started;
  bool reached_main;  // it had reached app.main (container_process::reached_main)
  bool host_lost;
  FERRY_WIRE_FIELDS(container_exited_header, container_id, how, signal, started, reached_main, host_lost);
};

/// agent -> server: send the bytes of the binary `digest` from `offset` on (one binary_chunk answers).
struct fetch_binary_header {
  std::string digest;
  std::uint64_t offset;
  FERRY_WIRE_FIELDS(fetch_binary_header, digest, offset);
};

/// server -> agent: the bytes of binary `digest` from `offset` (the payload; at most binary_chunk_size of
/// them), of `size` in all; or, unless `status` is ok, an error record saying why not.
struct binary_chunk_header {
  std::string digest;
  std::uint64_t offset;
  std::uint64_t size;
  wire::status status;
  FERRY_WIRE_FIELDS(binary_chunk_header, digest, offset, size, status);
};
inline constexpr std::uint64_t binary_chunk_size = 1 << 20;

/// agent <-> server, every heartbeat_interval: the sender is alive and reaches the peer. A connection that
/// has received nothing for heartbeat_timeout is taken for dead (the peer, its host, or the network between
/// them): a partition that TCP would take minutes to notice is noticed within seconds.
struct heartbeat_header {
  std::uint64_t seq;  // the sender's count, from 1
  FERRY_WIRE_FIELDS(heartbeat_header, seq);
};
/// One container's use of its host, in container_stats.
struct container_usage {
  std::uint64_t container_id;
  std::uint64_t rss_bytes;  // resident memory
  FERRY_WIRE_FIELDS(container_usage, container_id, rss_bytes);
};
/// agent -> server, every container_stats_interval while it runs containers: what each uses (`ferry ps`).
struct container_stats_header {
  std::vector<container_usage> containers;
  FERRY_WIRE_FIELDS(container_stats_header, containers);
};
inline constexpr std::chrono::milliseconds container_stats_interval{2'000};

inline constexpr std::chrono::milliseconds heartbeat_interval{1'000};
inline constexpr std::chrono::milliseconds heartbeat_timeout{5'000};

/// Encodes an error record as a payload, and back.
void encode_error(detail::buffer& out, const error_record& error);
error_record decode_error(std::span<const char> payload);

const char* to_string(message_kind kind);
inline const char* to_string(status s) { return static_cast<std::uint8_t>(s) <= last_status ? row(s).name : "unknown"; }

/// The codec of an enum the wire carries as one byte, whose values run from `first` to `last`. A byte outside
/// them is a malformed frame: peers of one protocol version know the same values (the handshake checks the
/// version), so decoding throws DecodeError naming the enum, its range and the byte.
template <class E, std::uint8_t first, std::uint8_t last>
struct byte_enum_codec {
  static void encode(detail::buffer& out, E value) {
    codec<std::uint8_t>::encode(out, static_cast<std::uint8_t>(value));
  }
  static void decode(detail::reader& in, E& value) {
    std::uint8_t raw = 0;
    codec<std::uint8_t>::decode(in, raw);
    if (raw < first || raw > last) {
      throw DecodeError(
          detail::demangle(typeid(E).name()) + " (" + std::to_string(first) + " to " + std::to_string(last) + ")",
          std::to_string(raw));
    }
    value = static_cast<E>(raw);
  }
  static std::string name() { return "enum(uint8)"; }
};

}  // namespace ferry::wire

namespace ferry {
template <>
struct codec<wire::status> : wire::byte_enum_codec<wire::status, 0, wire::last_status> {};
template <>
struct codec<wire::log_stream>
    : wire::byte_enum_codec<wire::log_stream, static_cast<std::uint8_t>(wire::log_stream::stdout_stream),
                            static_cast<std::uint8_t>(wire::log_stream::stderr_stream)> {};
}  // namespace ferry
