#include "iser/transport/rdma/cm.h"
#include "iser/transport/rdma/rdma_types.h"

namespace iser::rdma {

std::string_view WcStatusName(WcStatus status) {
  switch (status) {
    case WcStatus::kSuccess: return "success";
    case WcStatus::kLocLenErr: return "local length error";
    case WcStatus::kLocQpOpErr: return "local QP operation error";
    case WcStatus::kLocProtErr: return "local protection error";
    case WcStatus::kWrFlushErr: return "work request flushed error";
    case WcStatus::kRemInvReqErr: return "remote invalid request error";
    case WcStatus::kRemAccessErr: return "remote access error";
    case WcStatus::kRemOpErr: return "remote operation error";
    case WcStatus::kFatalErr: return "fatal error";
    case WcStatus::kGeneralErr: return "general error";
  }
  return "unknown";
}

std::string_view CmEventTypeName(CmEventType type) {
  switch (type) {
    case CmEventType::kAddrResolved: return "ADDR_RESOLVED";
    case CmEventType::kAddrError: return "ADDR_ERROR";
    case CmEventType::kRouteResolved: return "ROUTE_RESOLVED";
    case CmEventType::kRouteError: return "ROUTE_ERROR";
    case CmEventType::kConnectRequest: return "CONNECT_REQUEST";
    case CmEventType::kConnectResponse: return "CONNECT_RESPONSE";
    case CmEventType::kConnectError: return "CONNECT_ERROR";
    case CmEventType::kUnreachable: return "UNREACHABLE";
    case CmEventType::kRejected: return "REJECTED";
    case CmEventType::kEstablished: return "ESTABLISHED";
    case CmEventType::kDisconnected: return "DISCONNECTED";
  }
  return "UNKNOWN";
}

}  // namespace iser::rdma
