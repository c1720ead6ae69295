-- Argo CD health check for drmesh objects (drmesh.io DataSource, DataProduct, AccessPolicy).
-- Same meaning as kstatus (Flux), from the conditions the operator maintains:
--   Progressing  no status yet, the status is stale (observedGeneration behind
--                metadata.generation), or Reconciling=True (e.g. waiting for a grant,
--                a Secret, replicas)
--   Degraded     Stalled=True: the operator will not act until the object or its
--                context changes (classification violation, clearance too low, expired)
--   Healthy      Ready=True for the current generation
-- Written for Argo CD's Lua 5.1 runtime (also runs on Lua 5.4); `obj` is the object.
local hs = {}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  return reason .. message
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the drmesh operator to report a status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the drmesh operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = condition("Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = condition("Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = "Not ready: " .. describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
