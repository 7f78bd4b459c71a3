// Uses the types openapi-typescript generates from the served OpenAPI document (`./linkbus`, put
// beside this file by tests/it/openapi_clients.rs) as a TypeScript client of the API would;
// `tsc --noEmit --strict` must accept it.
import type { components, operations, paths } from "./linkbus";

type Schemas = components["schemas"];
type CaseList = paths["/api/cases"]["get"]["responses"][200]["content"]["application/json"];
type CaseRecord = operations["getCase"]["responses"][200]["content"]["application/json"];
type Action = operations["actOnCase"]["requestBody"]["content"]["application/json"];
type Refusal = operations["actOnCase"]["responses"][409]["content"]["application/json"];
type ListQuery = NonNullable<operations["listCases"]["parameters"]["query"]>;

const query: ListQuery = { system: "public_service", state: "routed", limit: 10 };
// @ts-expect-error: the systems are an enum, not any string.
const unknownSystem: Schemas["SourceSystem"] = "carrier_pigeon";
const accept: Action = { action: "accept" };
const reassign: Action = { action: "reassign", department: "dpw-ops-queue", reason: "not ours" };

function firstState(list: CaseList): Schemas["CaseState"] | undefined {
  return list.cases[0]?.state;
}

function lastEvent(record: CaseRecord): string | undefined {
  return record.timeline[record.timeline.length - 1]?.event;
}

function refused(error: Refusal): Schemas["ErrorCode"] {
  return error.code;
}

const openServices: operations["open311Services"]["parameters"]["path"] = { format: "json" };

export { query, unknownSystem, accept, reassign, firstState, lastEvent, refused, openServices };
