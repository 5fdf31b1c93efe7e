-- Resume: spec.suspend = false, and the annotation `swarm-operator resume` sets, which makes the
-- operator lift a pause for idleness (spec.idle) as well. One change: Argo CD patches both at once.
local os = require("os")
if obj.spec ~= nil and obj.spec.suspend == true then
  obj.spec.suspend = false
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["resume.claudeswarm.io/requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
