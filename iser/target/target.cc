#include "iser/target/target.h"

#include "absl/strings/str_format.h"
#include "iser/base/logging.h"
#include "iser/target/connection.h"
#include "iser/target/session.h"

namespace iser::target {

login::OperationalParams TargetOptions::DefaultOffer() {
  login::OperationalParams p;
  p.header_digest = false;
  p.data_digest = false;
  p.max_connections = 8;
  p.initial_r2t = false;  // allow unsolicited data
  p.immediate_data = true;
  p.max_burst_length = 1 << 20;
  p.first_burst_length = 256 << 10;
  p.max_outstanding_r2t = 8;
  p.default_time2wait = 2;
  p.default_time2retain = 20;
  p.error_recovery_level = 0;
  p.target_max_recv_dsl = 256 << 10;
  // iSER: a Send carries up to 16 KiB of immediate data (whole writes that size are not
  // copied at all); with FirstBurstLength capped to it on iSER connections (see
  // Connection::HandleLoginPdu) the rest of a write is fetched by RDMA Read. Receive
  // memory per iSER connection: MaxOutstandingUnexpectedPDUs (160 in iser-target) x
  // 16 KiB = 2.5 MiB.
  p.target_recv_dsl = 16 << 10;
  return p;
}

Target::Target(EventLoop* loop, TargetOptions options)
    : loop_(loop), options_(std::move(options)) {}

Target::~Target() {
  if (drain_deadline_timer_ != 0) loop_->CancelTimer(drain_deadline_timer_);
  if (drain_poll_timer_ != 0) loop_->CancelTimer(drain_poll_timer_);
  // Connections reference sessions and the loop; tear them down first.
  for (auto& [ptr, conn] : connections_) conn->DetachFromSession();
  connections_.clear();
  sessions_.clear();
}

absl::Status Target::AddNode(login::TargetNodeInfo info, std::unique_ptr<scsi::Device> device) {
  if (nodes_.contains(info.name))
    return absl::AlreadyExistsError(absl::StrFormat("target %s already exists", info.name));
  auto node = std::make_unique<TargetNode>();
  std::string name = info.name;
  node->info = std::move(info);
  node->device = std::move(device);
  nodes_.emplace(std::move(name), std::move(node));
  return absl::OkStatus();
}

TargetNode* Target::FindNode(std::string_view name) {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : it->second.get();
}

std::vector<login::TargetNodeInfo> Target::NodeInfos() const {
  std::vector<login::TargetNodeInfo> out;
  for (const auto& [name, node] : nodes_) out.push_back(node->info);
  return out;
}

void Target::AddConnection(std::unique_ptr<ConnectionTransport> transport) {
  auto conn = std::make_unique<Connection>(this, std::move(transport), next_connection_id_++);
  Connection* raw = conn.get();
  connections_.emplace(raw, std::move(conn));
  raw->Start();
}

Connection* Target::FindConnection(uint64_t id) {
  for (auto& [ptr, conn] : connections_)
    if (conn->id() == id) return ptr;
  return nullptr;
}

Session* Target::FindSessionByTsih(uint16_t tsih) {
  for (auto& [id, s] : sessions_)
    if (s->tsih == tsih) return s.get();
  return nullptr;
}

Session* Target::FindSessionByIsid(uint64_t isid, std::string_view initiator,
                                   std::string_view target_name) {
  for (auto& [id, s] : sessions_) {
    std::string_view node_name = s->node ? std::string_view(s->node->info.name) : "";
    if (s->isid == isid && s->initiator_name == initiator && node_name == target_name)
      return s.get();
  }
  return nullptr;
}

Session* Target::CreateSession() {
  auto s = std::make_unique<Session>();
  s->id = next_session_id_++;
  // TSIH 0 is reserved; skip values still in use after wrap-around.
  do {
    s->tsih = next_tsih_++;
  } while (s->tsih == 0 || FindSessionByTsih(s->tsih) != nullptr);
  Session* raw = s.get();
  sessions_.emplace(raw->id, std::move(s));
  return raw;
}

void Target::ExecuteScsi(Task* task) {
  scsi::Device* device = task->conn->session()->node->device.get();
  device->Execute(task->scsi, [this, task] {
    std::shared_ptr<TmfWaiter> waiter = std::move(task->tmf_waiter);
    if (task->conn == nullptr) {
      ReapOrphan(task);
    } else {
      task->conn->OnScsiDone(task);  // may destroy the task
    }
    if (waiter && --waiter->remaining == 0 && waiter->on_done) waiter->on_done();
  });
}

void Target::AdoptOrphan(std::unique_ptr<Task> task) {
  task->conn = nullptr;
  Task* raw = task.get();
  orphans_.emplace(raw, std::move(task));
}

void Target::ReapOrphan(Task* task) {
  orphans_.erase(task);
  CheckDrained();
}

void Target::DestroySession(Session* session) {
  auto it = sessions_.find(session->id);
  if (it == sessions_.end()) return;
  // Detach first so the connections' close reports don't come back here.
  std::vector<Connection*> conns;
  conns.swap(session->connections);
  for (Connection* c : conns) c->DetachFromSession();
  for (Connection* c : conns) c->Close(absl::AbortedError("session closed"));
  // Tasks still in the SCSI layer finish as orphans; the rest just go.
  for (auto& [itt, task] : session->tasks) {
    if (task->state == Task::State::kExecuting) {
      task->aborted = true;
      AdoptOrphan(std::move(task));
    }
  }
  session->tasks.clear();
  if (session->node) session->node->device->NexusLost(session->nexus);
  ISER_LOG(kInfo, "session tsih=%u (%s) ended", session->tsih, session->initiator_name);
  sessions_.erase(it);
}

void Target::ConnectionClosed(Connection* conn) {
  Session* s = conn->session();
  if (s != nullptr) {
    std::erase(s->connections, conn);
    for (auto it = s->reorder.begin(); it != s->reorder.end();) {
      it = it->second.conn == conn ? s->reorder.erase(it) : std::next(it);
    }
    // ErrorRecoveryLevel 0: losing a connection without Logout fails the whole session;
    // after the last connection of a session goes, so does the session.
    conn->DetachFromSession();
    if (s->connections.empty() || !s->logging_out) {
      // Tasks of this connection go with the session (orphaned if executing).
      DestroySession(s);
    } else {
      for (auto it = s->tasks.begin(); it != s->tasks.end();) {
        if (it->second->conn != conn) {
          ++it;
          continue;
        }
        if (it->second->state == Task::State::kExecuting) AdoptOrphan(std::move(it->second));
        it = s->tasks.erase(it);
      }
    }
  }
  // The connection (and its transport) may be on the call stack: free it after.
  auto it = connections_.find(conn);
  if (it != connections_.end()) {
    std::shared_ptr<Connection> doomed(std::move(it->second));
    connections_.erase(it);
    loop_->Defer([doomed] {});
  }
  CheckDrained();
}

void Target::AbortTasks(const uint64_t* lun, Session* except_session) {
  for (auto& [id, s] : sessions_) {
    if (s.get() == except_session) continue;
    for (auto it = s->tasks.begin(); it != s->tasks.end();) {
      Task* t = it->second.get();
      if (lun != nullptr && pdu::DecodeLun(t->lun_field) != *lun) {
        ++it;
        continue;
      }
      if (t->state == Task::State::kExecuting) {
        t->aborted = true;  // its response is dropped when the SCSI layer finishes
        ++it;
      } else if (t->state == Task::State::kReceivingData) {
        it = s->tasks.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void Target::CloseAllConnections() {
  std::vector<Connection*> all;
  for (auto& [ptr, conn] : connections_) all.push_back(ptr);
  for (Connection* c : all) {
    if (connections_.contains(c)) c->Close(absl::AbortedError("target reset"));
  }
}

void Target::Drain(absl::Duration deadline, std::function<void()> done) {
  draining_ = true;
  drained_ = std::move(done);
  for (auto& [ptr, conn] : connections_) conn->RequestLogout(0);
  drain_deadline_timer_ = loop_->RunAfter(deadline, [this] {
    drain_deadline_timer_ = 0;
    if (!drained_) return;
    ISER_LOG(kWarning, "drain deadline passed; closing %zu connections", connections_.size());
    CloseAllConnections();
    orphans_.clear();
    CheckDrained();
  });
  DrainPoll();
}

// Polls for in-flight commands to finish, then closes what is left.
void Target::DrainPoll() {
  drain_poll_timer_ = 0;
  if (!drained_) return;
  size_t in_flight = orphans_.size();
  for (auto& [id, s] : sessions_) in_flight += s->tasks.size();
  if (in_flight == 0) {
    CloseAllConnections();
    CheckDrained();
    return;
  }
  drain_poll_timer_ = loop_->RunAfter(absl::Milliseconds(10), [this] { DrainPoll(); });
}

void Target::CheckDrained() {
  if (!draining_ || !drained_) return;
  if (!connections_.empty() || !orphans_.empty()) return;
  auto done = std::move(drained_);
  drained_ = nullptr;
  if (drain_deadline_timer_ != 0) {
    loop_->CancelTimer(drain_deadline_timer_);
    drain_deadline_timer_ = 0;
  }
  loop_->Defer(std::move(done));
}

}  // namespace iser::target
