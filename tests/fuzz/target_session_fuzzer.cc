// Fuzzes the target's session/connection core with arbitrary full-feature-phase PDUs.
//
// Each input is a byte stream of PDUs (decoded by PduReader, no digests) delivered to a
// Connection that has already logged in through a real Target (in-memory LUN), through
// a fake transport that implements the connection seam in memory. Properties: no
// crash/UB/leak, and every task the core creates is gone once the connection closes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/base/logging.h"
#include "iser/pdu/pdu_reader.h"
#include "iser/scsi/scsi_device.h"
#include "iser/target/connection.h"
#include "iser/target/target.h"
#include "tests/iser/scsi/memory_block_store.h"

namespace iser::target {
namespace {

constexpr char kIqn[] = "iqn.2026-11.org.iser-csi:fuzz";

// Outlives the transport (the target frees closed connections, transport included).
struct FakeState {
  TransportEvents* events = nullptr;
  bool closed = false;
  bool logged_in = false;
  size_t sent = 0;
};

class FakeTransport : public ConnectionTransport {
 public:
  explicit FakeTransport(std::shared_ptr<FakeState> state) : state_(std::move(state)) {}
  TransportKind kind() const override { return TransportKind::kTcp; }
  std::string peer_address() const override { return "fuzz"; }
  std::string local_address() const override { return "fuzz"; }
  void SetEvents(TransportEvents* events) override { state_->events = events; }
  void ApplyParams(const login::OperationalParams& params) override {
    max_r2t_ = params.max_outstanding_r2t ? params.max_outstanding_r2t : 1;
  }
  void SendPdu(OutgoingPdu pdu) override {
    if (state_->closed) return;
    ++state_->sent;
    if (pdu.bhs.opcode() == pdu::Opcode::kLoginResponse && (pdu.bhs.flags() & 0x83) == 0x83 &&
        pdu.bhs.byte(pdu::field::kLoginStatusClass) == 0)
      state_->logged_in = true;
  }
  bool QueueDataIn(Task& task, bool with_status) override {
    for (OutgoingPdu& p : task.conn->BuildDataIn(task, with_status)) SendPdu(std::move(p));
    return with_status;
  }
  void GetDataOut(Task& task) override {
    while (task.bursts.size() < max_r2t_) {
      auto r2t = task.conn->BuildNextR2t(task);
      if (!r2t) break;
      SendPdu(std::move(*r2t));
    }
  }
  void CloseAfterFlush() override { Abort(); }
  void Abort() override {
    if (state_->closed) return;
    state_->closed = true;
    state_->events->OnTransportClosed(absl::AbortedError("fuzz"));
  }

 private:
  std::shared_ptr<FakeState> state_;
  uint32_t max_r2t_ = 1;
};

void Pump(EventLoop& loop) {
  // Runs whatever the core deferred (frees closed connections, flushes), then returns.
  loop.Stop();
  loop.Run();
}

std::string LoginText() {
  std::string t;
  for (const char* kv :
       {"InitiatorName=iqn.2026-11.org.iser-csi:fuzzer", "SessionType=Normal",
        "TargetName=iqn.2026-11.org.iser-csi:fuzz", "HeaderDigest=None", "DataDigest=None",
        "InitialR2T=No", "ImmediateData=Yes", "MaxBurstLength=16384", "FirstBurstLength=8192",
        "MaxRecvDataSegmentLength=8192", "MaxOutstandingR2T=2", "DefaultTime2Wait=2",
        "DefaultTime2Retain=0", "DataPDUInOrder=Yes", "DataSequenceInOrder=Yes",
        "ErrorRecoveryLevel=0", "MaxConnections=1"}) {
    t += kv;
    t.push_back('\0');
  }
  return t;
}

}  // namespace
}  // namespace iser::target

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  iser::SetLogLevel(iser::LogLevel::kError);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iser;
  using namespace iser::target;
  auto loop_or = EventLoop::Create();
  if (!loop_or.ok()) return 0;
  std::unique_ptr<EventLoop> loop = std::move(*loop_or);
  TargetOptions options;
  options.nop_interval = absl::ZeroDuration();
  options.queue_depth = 16;
  options.max_io_bytes = 1 << 20;
  auto target = std::make_unique<Target>(loop.get(), options);
  auto device = std::make_unique<scsi::Device>();
  auto store = std::make_shared<scsi::testing::MemoryBlockStore>(1 << 20);
  scsi::LogicalUnitConfig lc;
  lc.serial = "fuzz0";
  lc.naa_id = 1;
  lc.target_name = kIqn;
  if (!device->AddLogicalUnit(0, store, lc).ok()) return 0;
  login::TargetNodeInfo info;
  info.name = kIqn;
  if (!target->AddNode(info, std::move(device)).ok()) return 0;

  auto state = std::make_shared<FakeState>();
  target->AddConnection(std::make_unique<FakeTransport>(state));
  TransportEvents* conn = state->events;  // valid while !state->closed

  // Log in (operational stage straight to full feature phase).
  pdu::ReceivedPdu login;
  login.bhs = pdu::Bhs::Make(pdu::Opcode::kLoginRequest, 0x80 | (1 << 2) | 3);
  login.bhs.set_immediate(true);
  login.bhs.set_u48(pdu::field::kIsid, 0x23d000000001ULL);
  login.bhs.set_u32(pdu::field::kCmdSn, 1);
  std::string text = LoginText();
  login.owned.assign(text.begin(), text.end());
  login.data = login.owned;
  login.bhs.set_data_segment_length(static_cast<uint32_t>(text.size()));
  conn->OnPduReceived(std::move(login));
  Pump(*loop);
  if (!state->logged_in) std::abort();  // the seed login must work

  pdu::PduReader reader;
  reader.set_max_data_segment(1 << 16);
  reader.set_header_check([&](const pdu::Bhs& bhs) {
    return state->closed ? absl::CancelledError("closed") : conn->CheckHeader(bhs);
  });
  reader.set_placement([&](const pdu::Bhs& bhs, std::span<const uint8_t>) {
    return state->closed ? std::span<uint8_t>() : conn->PlaceData(bhs);
  });
  size_t pos = 0;
  while (pos < size && !state->closed) {
    bool complete = false;
    auto used = reader.Feed({data + pos, size - pos}, &complete);
    if (!used.ok()) {
      // What the TCP transport does on a framing error.
      if (!state->closed) {
        state->closed = true;
        conn->OnTransportClosed(used.status());
      }
      break;
    }
    pos += *used;
    if (complete && !state->closed) {
      conn->OnPduReceived(reader.TakePdu());
      Pump(*loop);
    }
  }
  if (!state->closed) {
    state->closed = true;
    conn->OnTransportClosed(absl::AbortedError("end of input"));
  }
  Pump(*loop);
  if (target->connection_count() != 0 || target->session_count() != 0) std::abort();
  target.reset();
  Pump(*loop);
  return 0;
}
