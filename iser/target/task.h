// One SCSI command on the target, from its SCSI Command PDU to its status.
#ifndef ISER_TARGET_TASK_H_
#define ISER_TARGET_TASK_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "iser/base/io_buffer.h"
#include "iser/scsi/scsi_device.h"

namespace iser::target {

class Connection;

// A task management request waiting for the tasks it aborted to leave the SCSI layer
// before its response goes out (SAM: the response follows the termination).
struct TmfWaiter {
  size_t remaining = 0;
  std::function<void()> on_done;
};

// An outstanding R2T (TCP) or RDMA Read (iSER): a solicited burst of write data.
struct SolicitedBurst {
  uint32_t ttt = 0;
  uint32_t r2t_sn = 0;
  uint32_t offset = 0;
  uint32_t length = 0;
  uint32_t received = 0;
  uint32_t next_data_sn = 0;
};

class Task {
 public:
  // Runs when the task is destroyed, however that happens (completion, abort, session
  // end): a transport that placed data into `buffer` behind the core's back (iSER RDMA
  // Reads still in flight) takes the buffer over until the placement is finished.
  using DestroyHook = std::function<void(Task& task)>;
  ~Task() {
    if (on_destroy) on_destroy(*this);
  }
  DestroyHook on_destroy;
  std::shared_ptr<void> transport_state;  // the transport's, for on_destroy

  enum class State {
    kReceivingData,  // waiting for immediate/unsolicited/solicited write data
    kExecuting,      // in the SCSI layer
    kSendingStatus,  // response queued
  };

  Connection* conn = nullptr;  // connection allegiance: all PDUs of the task go here
  uint32_t itt = 0;
  uint32_t cmd_sn = 0;
  uint64_t lun_field = 0;
  uint32_t edtl = 0;
  bool read = false;
  bool write = false;
  bool immediate = false;
  State state = State::kReceivingData;
  bool aborted = false;  // ABORT TASK / LUN RESET while executing: drop the response
  std::shared_ptr<TmfWaiter> tmf_waiter;  // told when an aborted task finally completes

  std::vector<uint8_t> cdb;
  IoBuffer buffer;  // EDTL bytes: write data in, or read data out

  // Write data bookkeeping (byte counts into `buffer`).
  uint32_t unsolicited_limit = 0;  // [0, unsolicited_limit) arrives without R2T
  uint32_t unsolicited_received = 0;
  uint32_t unsolicited_next_data_sn = 0;
  uint32_t next_r2t_offset = 0;  // first byte not yet solicited
  uint32_t next_r2t_sn = 0;
  uint32_t total_received = 0;
  std::deque<SolicitedBurst> bursts;  // outstanding, oldest first

  // Read data bookkeeping.
  uint32_t data_sn = 0;  // Data-In PDUs sent so far (ExpDataSN of the response)

  scsi::ItNexus nexus;  // copied: the task may outlive its session (orphaned on close)
  scsi::ScsiTask scsi;  // the SCSI layer's view; outputs land here

  bool WriteDataComplete() const { return total_received >= edtl; }
};

}  // namespace iser::target

#endif  // ISER_TARGET_TASK_H_
