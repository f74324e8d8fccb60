// The embedded iSCSI target: target nodes (IQN + LUNs), sessions and connections.
//
// One Target runs on one EventLoop; every connection and session it owns is touched only
// from that loop's thread. Transports (TCP listener, iSER) hand it connected transports.
#ifndef ISER_TARGET_TARGET_H_
#define ISER_TARGET_TARGET_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "iser/base/event_loop.h"
#include "iser/login/negotiation.h"
#include "iser/scsi/scsi_device.h"
#include "iser/target/connection_transport.h"

namespace iser::target {

class Connection;
class Session;

struct TargetNode {
  login::TargetNodeInfo info;  // name, alias, CHAP, ACL
  std::unique_ptr<scsi::Device> device;
};

struct TargetOptions {
  // What the target offers in login negotiation.
  login::OperationalParams offer = DefaultOffer();
  uint32_t queue_depth = 128;        // per session: MaxCmdSN - ExpCmdSN + 1
  uint32_t max_io_bytes = 16 << 20;  // largest EDTL accepted
  uint16_t target_portal_group_tag = 1;
  std::vector<login::PortalInfo> portals;           // for SendTargets
  absl::Duration nop_interval = absl::Seconds(30);  // NOP-In ping when idle
  absl::Duration nop_timeout = absl::Seconds(30);
  absl::Duration login_timeout = absl::Seconds(15);

  static login::OperationalParams DefaultOffer();
};

class Target {
 public:
  Target(EventLoop* loop, TargetOptions options);
  ~Target();

  absl::Status AddNode(login::TargetNodeInfo info, std::unique_ptr<scsi::Device> device);
  TargetNode* FindNode(std::string_view name);
  std::vector<login::TargetNodeInfo> NodeInfos() const;

  // Takes a freshly connected transport (loop thread).
  void AddConnection(std::unique_ptr<ConnectionTransport> transport);

  // Stops taking logins, waits for in-flight commands to finish, logs everybody out, and
  // runs `done` (loop thread) once every connection is closed or `deadline` passed.
  void Drain(absl::Duration deadline, std::function<void()> done);

  // Portals announced by SendTargets (known once the listeners are bound).
  void set_portals(std::vector<login::PortalInfo> portals) {
    options_.portals = std::move(portals);
  }

  EventLoop* loop() const { return loop_; }
  const TargetOptions& options() const { return options_; }
  size_t connection_count() const { return connections_.size(); }
  size_t session_count() const { return sessions_.size(); }

  // ---- used by Connection ----
  Session* FindSessionByTsih(uint16_t tsih);
  Session* FindSessionByIsid(uint64_t isid, std::string_view initiator,
                             std::string_view target_name);
  Session* CreateSession();
  void DestroySession(Session* session);  // aborts its tasks, NexusLost to the device
  void ConnectionClosed(Connection* conn);
  Connection* FindConnection(uint64_t id);
  // A task whose connection went away while it was in the SCSI layer; freed when the
  // SCSI layer completes it.
  void AdoptOrphan(std::unique_ptr<Task> task);
  void ReapOrphan(Task* task);
  // Starts SCSI execution of `task` and routes the completion to its connection, or to
  // the orphan list if the connection is gone by then.
  void ExecuteScsi(Task* task);  // the connection may be destroyed after this
  bool draining() const { return draining_; }
  // Aborts tasks for `lun` (or all LUNs) in every session: LUN / target reset.
  void AbortTasks(const uint64_t* lun, Session* except_session);
  // Cold reset: close every connection.
  void CloseAllConnections();

 private:
  void CheckDrained();
  void DrainPoll();

  EventLoop* loop_;
  TargetOptions options_;
  std::map<std::string, std::unique_ptr<TargetNode>, std::less<>> nodes_;
  std::map<Connection*, std::unique_ptr<Connection>> connections_;
  std::map<uint64_t, std::unique_ptr<Session>> sessions_;
  std::map<Task*, std::unique_ptr<Task>> orphans_;
  uint64_t next_connection_id_ = 1;
  uint64_t next_session_id_ = 1;
  uint16_t next_tsih_ = 1;
  bool draining_ = false;
  std::function<void()> drained_;
  EventLoop::TimerId drain_deadline_timer_ = 0;
  EventLoop::TimerId drain_poll_timer_ = 0;
};

}  // namespace iser::target

#endif  // ISER_TARGET_TARGET_H_
