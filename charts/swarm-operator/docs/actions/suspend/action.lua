-- Suspend: spec.suspend = true. The operator pauses the sandbox (E2B keeps memory and files; the
-- meter stops) and reports phase Suspended.
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.suspend = true
return obj
